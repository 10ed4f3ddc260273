import Foundation
import HubRules
import KioskProtocol
import Testing

/// The hub's upload rules as pure functions (issue 22 item 2): a record and the facts in, a
/// typed decision out. The facts are a list here, not a database.
@Suite struct RecordChecksTests {
    /// What is "stored", as plain values.
    struct Facts: StoredFacts {
        var parts: [BillPart] = []
        var ackUsedBy: String?
        var billUsedBy: String?
        var targets: [String: (kind: String, subsidyFen: Int64?)] = [:]
        var reversed: [String: String] = [:]
        var legalAid: [String] = []
        func billParts(billReference: String, deviceID: String, cardNumber: String, cardSequence: Int64) throws -> [BillPart] { parts }
        func ackUsedForAnotherBill(cardNumber: String, cardSequence: Int64, deviceID: String, billReference: String) throws -> String? { ackUsedBy }
        func billUsedByAnotherDevice(billReference: String, institution: String, deviceID: String) throws -> String? { billUsedBy }
        func reversalTarget(_ recordID: String) throws -> (kind: String, subsidyFen: Int64?)? { targets[recordID] }
        func reversedBy(_ recordID: String) throws -> String? { reversed[recordID] }
        func legalAidBodies(cardNumber: String) throws -> [String] { legalAid }
    }

    struct Programs: RosterFacts {
        var programs: [String: (cardType: String, limitFen: Int64?)] = [:]
        var cards: [String: (personRef: String, publicKey: [UInt8]?)] = [:]
        func program(_ code: String) -> (cardType: String, limitFen: Int64?)? { programs[code] }
        func card(_ number: String) -> (personRef: String, publicKey: [UInt8]?)? { cards[number] }
    }

    static func incoming(_ object: [String: Any]) throws -> IncomingRecord {
        let bytes = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        let id = object["record_id"] as? String ?? ""
        return IncomingRecord(bytes: bytes, sha256: "x", recordID: id, seq: Int64(object["seq"] as? Int ?? 0))
    }

    static let checks = RecordChecks(deviceID: Fixtures.deviceID, institution: "330782-H01", consentStart: nil, batchBills: [:])
    static let now = Date(timeIntervalSince1970: 1_795_316_400)

    @Test("a subsidy: accepted on a roster that knows it, refused for each fact that is wrong, in the spec's order")
    func subsidyDecisions() throws {
        let raw = try HubCase.subsidy(seq: 1)
        let r = try Self.incoming(raw)
        let s = try #require(r.record?.medicalSubsidy)
        var roster = Programs(programs: [s.program: ("medical", 60_000)], cards: [s.cardNumber: (s.personRef, nil)])
        // The batch holds the record's own share of its bill (as the hub gathers it before checking).
        let bills = [s.billKey: [BillPart(recordID: r.recordID, billFen: s.billFen, patientPaysFen: s.patientPaysFen, subsidyFen: s.subsidyFen)]]
        let here = RecordChecks(deviceID: Fixtures.deviceID, institution: "330782-H01", consentStart: nil, batchBills: bills)
        func decide(_ facts: Facts = Facts(), lastSeq: Int64 = 0, checks: RecordChecks? = nil) throws -> RecordChecks.Decision {
            let checks = checks ?? here
            return try checks.decide(r, lastSeq: lastSeq, subsidy: s, cardAck: nil, roster: roster, stored: facts, now: Self.now)
        }
        #expect(try decide() == .accept(flags: []))
        #expect(try decide(lastSeq: 5) == .refuse(Refusal("seq_gap", "expected seq 6, got 1")))
        var used = Facts(); used.billUsedBy = "KSK-OTHER"
        guard case .refuse(let dup) = try decide(used) else { Issue.record("a bill used twice was accepted"); return }
        #expect(dup.reason == "duplicate_bill")
        var acked = Facts(); acked.ackUsedBy = "KSK-TEST-0001-9"
        guard case .refuse(let ack) = try decide(acked) else { Issue.record("an acknowledgement used twice was accepted"); return }
        #expect(ack.reason == "bad_card_ack")
        let elsewhere = RecordChecks(deviceID: Fixtures.deviceID, institution: "330782-H09", consentStart: nil, batchBills: bills)
        // A bill whose parts do not add up (here: none) is refused before anything is looked up.
        guard case .refuse(let amounts) = try decide(used, checks: Self.checks) else { Issue.record("a bill without parts was accepted"); return }
        #expect(amounts.reason == "bad_amounts")
        guard case .refuse(let inst) = try decide(checks: elsewhere) else { Issue.record("another institution's bill was accepted"); return }
        #expect(inst.reason == "wrong_institution")
        roster.programs[s.program] = ("legal_aid", nil)
        guard case .refuse(let program) = try decide() else { Issue.record("a legal-aid program paid a subsidy"); return }
        #expect(program.reason == "unknown_program")
        roster.programs[s.program] = ("medical", 100)
        #expect(try decide() == .accept(flags: ["over_limit"]))
    }

    @Test("a reversal: of a stored subsidy of this device, once, for its exact amount")
    func reversalDecisions() throws {
        let target = "\(Fixtures.deviceID)-1"
        let r = try Self.incoming(try HubCase.reversal(seq: 2, reverses: target, amount: 10_000))
        func decide(_ facts: Facts) throws -> RecordChecks.Decision {
            try Self.checks.decide(r, lastSeq: 1, subsidy: nil, cardAck: nil, roster: Programs(), stored: facts, now: Self.now)
        }
        var facts = Facts()
        guard case .refuse(let none) = try decide(facts) else { Issue.record("a reversal of nothing was accepted"); return }
        #expect(none.reason == "bad_reversal")
        facts.targets[target] = ("medical_subsidy", 10_000)
        #expect(try decide(facts) == .accept(flags: []))
        facts.targets[target] = ("medical_subsidy", 9_999)
        guard case .refuse(let amount) = try decide(facts) else { Issue.record("a wrong amount was accepted"); return }
        #expect(amount.reason == "bad_reversal")
        facts.targets[target] = ("medical_subsidy", 10_000)
        facts.reversed[target] = "\(Fixtures.deviceID)-3"
        guard case .refuse(let twice) = try decide(facts) else { Issue.record("a second reversal was accepted"); return }
        #expect(twice.reason == "bad_reversal" && twice.detail?.contains("already reversed") == true)
    }
}
