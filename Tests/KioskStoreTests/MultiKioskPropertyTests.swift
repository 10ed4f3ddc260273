import BenefitCard
import Crypto
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import SmartCard
import TestVectors
import Testing
import VirtualCard

/// Property (issue: "random sequences of bills, cards, kiosks and snapshots never grant more
/// than the limit per person per year"): three kiosks with their own stores, offline from
/// each other, the seven vector cards (one person holds a lost and a new card), random
/// bills, random card pulls before/after the usage write, random time across the turn of
/// the year, and now and then a platform sync: every record acknowledged and a new signed
/// snapshot with the settled usage installed everywhere. Whatever happens, the subsidies
/// committed for a person, program and year never pass the program's limit, and every
/// deduction ends resolved exactly once.
///
/// Contract v2 adds the attacker and the unlucky kiosk: a cardholder with a USB reader who
/// tries to write the card back whenever they can (an earlier genuine record, a lower figure
/// signed with a key of their own, with and without the public device certificate), and
/// kiosks whose clocks are skewed (minutes either way, six weeks fast, a year slow). The card
/// refuses every rewrite, and still nothing passes the limit.
@Suite struct MultiKioskPropertyTests {
    struct Card { let emulator: CardEmulator; let number: String }

    /// "person_ref|program|period" of a usage line or a subsidy record.
    static func usageKey(_ o: [String: Any]) throws -> String {
        let person = try #require(o["person_ref"]), program = try #require(o["program"]), period = try #require(o["period"])
        return "\(person)|\(program)|\(period)"
    }

    /// The subsidy record a reversal (`j`) reverses, from kiosk `k`'s store.
    static func reversed(_ j: [String: Any], in k: Device) throws -> [String: Any] {
        let id = try #require(j["reverses"] as? String)
        return try #require(try k.store.record(id)).wire
    }

    @Test(arguments: [1 as UInt64, 2, 3])
    func neverMoreThanTheLimit(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let limits = ["HM-SUBSIDY": Fen(60000), "HM-CS-OUTPATIENT": Fen(45000)]
        let kiosks = try (1...3).map { i -> Device in
            let seed = Data(SHA256.hash(data: Data("property kiosk \(i)".utf8)))
            return try Fixture.device(id: "KSK-PROP-000\(i)", seed: seed.base64EncodedString())
        }
        let cardsData = try Data(contentsOf: Fixture.url("cards.json"))
        let cards = try CardDescription.decode(cardsData).map { Card(emulator: try CardEmulator(description: $0), number: $0.cardNumber) }

        var clock = try #require(Timestamp.date("2026-12-20T00:00:00Z"))
        var snapshotNumber = 0
        var settledUsage: [String: Fen] = [:]   // "person_ref|program|period" → fen

        func publish() throws {
            snapshotNumber += 1
            var h = Fixture.vectorHeader
            h["snapshot_id"] = "330782-PROP-\(snapshotNumber)"
            h["issued_at"] = Timestamp.string(clock.addingTimeInterval(Double(snapshotNumber)))
            h["settled_through"] = Timestamp.string(clock)
            h["expires_at"] = "2027-06-30T00:00:00Z"
            var records = Fixture.vectorRecords.filter { $0["type"] as? String != "usage" }
            records += kiosks.map { ["type": "device", "device_id": $0.config.deviceID, "public_key": $0.publicKeyBase64, "institution": "330782-H01", "status": "active"] }
            let base = Fixture.vectorRecords.filter { $0["type"] as? String == "usage" }
            var usage: [String: Fen] = [:]
            for u in base { usage[try Self.usageKey(u)] = Fen(try #require(u["used_fen"] as? Int)) }
            for (k, v) in settledUsage { usage[k, default: 0] += v }
            for (k, v) in usage {
                let p = k.split(separator: "|").map(String.init)
                records.append(["type": "usage", "person_ref": p[0], "program": p[1], "period": p[2], "used_fen": v])
            }
            let file = try Fixture.snapshot(header: h, records: records)
            for k in kiosks { try k.store.installSnapshot(at: file, trustedAuthorities: Fixture.authorities, now: clock) }
        }

        func sync() throws {
            for k in kiosks {
                for r in try k.store.records(status: .queued) {
                    try k.store.markDelivered(recordID: r.recordID, status: .accepted, receivedAt: Timestamp.string(clock), reason: nil)
                    let j = r.wire
                    if r.kind == .medicalSubsidy || r.kind == .subsidyReversal {
                        let original = r.kind == .medicalSubsidy ? j : try Self.reversed(j, in: k)
                        let key = try Self.usageKey(original)
                        settledUsage[key, default: 0] += r.amountFen
                    }
                }
            }
            clock = clock.addingTimeInterval(60)
            try publish()
        }

        try publish()
        var bill = 0
        var history: [String: [[UInt8]]] = [:]   // every EF.USAGE a card has held
        var rewrites = 0, skewedTaps = 0
        let certificate = TestDevices.certificate("KSK-TEST-0001")
        let attackerKey = Curve25519.Signing.PrivateKey()
        for _ in 0..<250 {
            clock = clock.addingTimeInterval(Double(rng.next() % 40_000))
            let skews: [TimeInterval] = [0, 0, 0, 0, 300, -300, 42 * 86_400, -365 * 86_400]
            let skew = skews[Int(rng.next() % UInt64(skews.count))]
            if skew != 0 { skewedTaps += 1 }
            let kiosk = Kiosk(device: kiosks[Int(rng.next() % 3)], clock: .fixed(clock.addingTimeInterval(skew)))
            let card = cards[Int(rng.next() % UInt64(cards.count))]
            if let held = card.emulator.usageObject { history[card.number, default: []].append(held) }
            if card.emulator.type == .medical, rng.next() % 4 == 0, let held = card.emulator.usageObject {
                // The cardholder's turn with a USB reader: write an earlier record back, or a
                // lower figure signed with their own key; with the (public) certificate of a
                // device or without. The card must refuse; what it holds must not change.
                rewrites += 1
                let old = history[card.number]?.randomElement(using: &rng) ?? held
                let lower = try UsageRecord.encode(cardNumber: card.number, period: KioskProtocol.Period.of(clock), sequence: (try UsageRecord(fileBytes: held).sequence) + 1,
                                                   terminalID: "KSK-TEST-0001", writtenAt: clock, entries: [.init(program: "HM-SUBSIDY", usedFen: 0)],
                                                   challenge: Array(repeating: 0, count: 16), signer: attackerKey)
                let object = rng.next() % 2 == 0 ? old : lower
                var script = "00A4040008F14855494D494E0100\n"
                if rng.next() % 2 == 0 { script += "002A00BE\(String(format: "%02X", certificate.count))\(certificate.hexString)\n" }
                script += "0084000010\n00D68300\(String(format: "%02X", object.count))\(object.hexString)00\n"
                card.emulator.setMisbehaviour(Misbehaviour())
                let results = try APDUScript(script).run(raw: EmulatedChannel(card.emulator))
                #expect(results.last.map { !$0.response.status.isSuccess } ?? false, "a rewrite was accepted")
                #expect(card.emulator.usageObject == held, "the card changed under an attacker")
            }
            switch rng.next() % 10 {
            case 0, 1: card.emulator.setMisbehaviour(Misbehaviour(pullBeforeWrite: true))
            case 2, 3: card.emulator.setMisbehaviour(Misbehaviour(pullAfterWrite: true))
            default: card.emulator.setMisbehaviour(Misbehaviour())
            }
            if rng.next() % 12 == 0 { try sync() }
            if rng.next() % 15 == 0 {
                // A cashier reverses a subsidy now and then.
                if let r = try kiosk.device.store.records().filter({ $0.kind == .medicalSubsidy }).randomElement(using: &rng) {
                    _ = try? kiosk.device.store.reverse(recordID: r.recordID, reason: "test", operator: "prop", device: kiosk.device.context, now: clock)
                }
            }
            bill += 1
            do {
                let o = try kiosk.charge(EmulatedChannel(card.emulator), billFen: Fen(rng.next() % 12_000) + 1, billReference: "P\(seed)-\(bill)")
                if o.decision.code == .cardRemoved && rng.next() % 3 != 0 {
                    // "Present the card again": usually at the same kiosk, right away.
                    card.emulator.setMisbehaviour(Misbehaviour())
                    let again = try kiosk.check(EmulatedChannel(card.emulator))
                    // At most the one pending deduction (none when the pull came before it).
                    #expect(again.card.resolved.count <= 1)
                    #expect(try kiosk.device.store.pendingDeductions(cardNumber: card.number).isEmpty)
                }
            } catch is CardRefusal {
            } catch LedgerError.pendingExists {
                Issue.record("a pending deduction survived a presentation")
            }
        }
        // Present every card everywhere once more: no pull this time, so everything resolves.
        for c in cards { c.emulator.setMisbehaviour(Misbehaviour()) }
        for k in kiosks { for c in cards { _ = try? Kiosk(device: k, clock: .fixed(clock)).check(EmulatedChannel(c.emulator)) } }

        var granted: [String: Fen] = [:]
        let all = try kiosks.flatMap { try $0.store.deductions(limit: 10_000) }
        #expect(all.filter { $0.state == .committed }.count >= 5, "the run granted too little to prove anything")
        #expect(all.contains { $0.resolution?.contains("found on the card") == true }, "no torn write was found committed")
        #expect(all.contains { $0.state == .voided }, "no torn write was voided")
        for k in kiosks {
            #expect(try k.store.pendingDeductions().isEmpty)
            for r in try k.store.records() where r.kind == .medicalSubsidy || r.kind == .subsidyReversal {
                let j = r.kind == .medicalSubsidy ? r.wire : try Self.reversed(r.wire, in: k)
                granted[try Self.usageKey(j), default: 0] += r.amountFen
            }
        }
        // The snapshot's own prior usage counts toward the limit too.
        for u in Fixture.vectorRecords where u["type"] as? String == "usage" {
            granted[try Self.usageKey(u), default: 0] += Fen(try #require(u["used_fen"] as? Int))
        }
        #expect(granted.values.contains { $0 > 0 })
        #expect(rewrites > 10 && skewedTaps > 20, "the attacker or the skewed clocks hardly played")
        for (key, total) in granted {
            let program = String(key.split(separator: "|")[1])
            let limit = try #require(limits[program])
            #expect(total <= limit, "\(key): \(total) granted")
        }
        // The cards never carry more than the limit either.
        for c in cards {
            guard let u = try? UsageRecord(fileBytes: c.emulator.file(3) ?? [0x72, 0]), let body = u.body else { continue }
            for e in body.entries {
                let limit = try #require(limits[e.program])
                #expect(e.usedFen <= limit)
            }
        }
    }
}
