import Foundation
import Testing
@testable import KioskProtocol

/// The one record model (upload spec §1) that the ledger writes, the receipt desk prints from
/// and the hub stores.
@Suite struct SettlementRecordTests {
    static let subsidy = SettlementRecord.MedicalSubsidy(
        cardNumber: "3307820000000017", personRef: "8919243b61b2010949797f63b0328dfc", program: "HM-SUBSIDY", period: "2026",
        billReference: "H01-1", billFen: 12000, subsidyFen: 10000, patientPaysFen: 2000, usedBeforeFen: 20000, usedAfterFen: 30000,
        cardSequence: 4, cardChallenge: "00112233445566778899aabbccddeeff", cardAck: "AAAA", institution: "330782-H01")

    static func record(_ content: SettlementRecord.Content, snapshot: String? = "S1") -> SettlementRecord {
        SettlementRecord(recordID: "KSK-TEST-0001-7", seq: 7, createdAt: "2026-11-22T03:00:00Z", snapshotID: snapshot, content: content)
    }

    static func object(_ json: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    @Test("every kind is one flat object with the spec's field names, and reads back the same")
    func roundTrip() throws {
        let all: [SettlementRecord.Content] = [
            .medicalSubsidy(Self.subsidy),
            .subsidyReversal(.init(reverses: "KSK-TEST-0001-1", amountFen: 10000, reason: "wrong bill", operator: "OP-1")),
            .legalAidApplication(.init(cardNumber: "3307820000000025", personRef: "p", program: "LA-DIRECT", matter: "labor_remuneration",
                                       contactPhone: "13800000000")),
            .legalAidApplication(.init(cardNumber: "3307820000000025", personRef: "p", program: "LA-DIRECT", matter: "relief_payment")),
            .alert(.init(code: "clock_suspect", detail: "d")),
            .alert(.init(code: "card_not_authentic", cardNumber: "3307820000000017", detail: "d")),
        ]
        for content in all {
            let r = Self.record(content)
            let text = try r.json()
            #expect(try SettlementRecord(json: text) == r)
            let o = try Self.object(text)
            #expect(o["record_id"] as? String == "KSK-TEST-0001-7" && o["seq"] as? Int == 7 && o["kind"] as? String == content.kind.rawValue)
            #expect(o["created_at"] as? String == "2026-11-22T03:00:00Z" && o["snapshot_id"] as? String == "S1")
            #expect(!text.contains("\\/"))
        }
        let m = try Self.object(try Self.record(.medicalSubsidy(Self.subsidy)).json())
        #expect(Set(m.keys) == ["record_id", "seq", "kind", "created_at", "snapshot_id", "card_number", "person_ref", "program", "period",
                                "bill_reference", "bill_fen", "subsidy_fen", "patient_pays_fen", "used_before_fen", "used_after_fen",
                                "card_sequence", "card_challenge", "card_ack", "institution"])
        // Keys sorted, so the same record is always the same bytes (the hub hashes them).
        let text = try Self.record(.medicalSubsidy(Self.subsidy)).json()
        #expect(text.hasPrefix(#"{"bill_fen":12000,"bill_reference":"H01-1","#))
    }

    @Test("snapshot_id is written as null before any snapshot, and must be present to read")
    func snapshotIDIsAlwaysThere() throws {
        let text = try Self.record(.alert(.init(code: "x", detail: "y")), snapshot: nil).json()
        #expect(text.contains(#""snapshot_id":null"#))
        #expect(try SettlementRecord(json: text).snapshotID == nil)
        let without = text.replacingOccurrences(of: #","snapshot_id":null"#, with: "")
        #expect(throws: DecodingError.self) { try SettlementRecord(json: without) }
    }

    @Test("a body that is not a whole record is an error, never an empty record")
    func failsClosed() throws {
        let good = try Self.record(.medicalSubsidy(Self.subsidy)).json()
        for bad in [
            "", "{}", "[]", "null", #"{"kind":"medical_subsidy"}"#,
            good.replacingOccurrences(of: #""kind":"medical_subsidy""#, with: #""kind":"lottery""#),
            good.replacingOccurrences(of: #""subsidy_fen":10000"#, with: #""subsidy_fen":"10000""#),
            good.replacingOccurrences(of: #""used_after_fen":30000,"#, with: ""),
            good.replacingOccurrences(of: #""card_sequence":4"#, with: #""card_sequence":99999999999999999999"#),
            good.replacingOccurrences(of: #""person_ref":"8919243b61b2010949797f63b0328dfc""#, with: #""person_ref":null"#),
        ] {
            #expect(throws: (any Error).self, "\(bad.prefix(60))") { try SettlementRecord(json: bad) }
        }
    }
}
