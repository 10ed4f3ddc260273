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

/// Every row of vectors/README.md "Expected decisions", through pcscd + vpcd + the emulator.
extension PCSCIntegrationTests {
    /// KSK-TEST-0001 (or another test device) provisioned with the vectors' keys and its
    /// certificate, `snapshot-small.jsonl` installed.
    static func kioskDevice(id: String = "KSK-TEST-0001", certificate: [UInt8]? = nil, snapshot: Bool = true) throws -> Device {
        let dir = Scratch.folder("int")
        let seed = Vectors.devices[id].flatMap { $0["private_seed"] }.flatMap { Data(base64Encoded: $0) }
        var d = try Device.provision(stateDir: dir, config: DeviceConfig(
            deviceID: id, institution: "330782-H01", profile: .hospital,
            issuerKeys: TestDevices.issuerKeys, authorityKeys: TestDevices.authorityKeys, deviceCAKeys: TestDevices.caKeys,
            hubURL: "http://127.0.0.1:9", printer: "file:/tmp", provisionedAt: "2026-11-22T00:00:00Z"),
            seed: seed, replaceKey: false)
        let cert = certificate ?? TestDevices.certificate(id)
        if !cert.isEmpty {
            try d.installCertificate(cert, now: at)
            d = try Device(stateDir: dir)
        }
        if snapshot {
            try d.store.installSnapshot(at: Vectors.url("snapshot-small.jsonl"), trustedAuthorities: d.trustedAuthorities, now: at)
        }
        return d
    }

    func onCard<T>(_ number: String, _ m: Misbehaviour = Misbehaviour(), emulator: CardEmulator? = nil, _ body: (CardConnection) throws -> T) throws -> T {
        try Harness.withCard(emulator ?? Vectors.emulator(number, m)) { ctx, _ in
            let c = try ctx.connect(reader: Harness.reader)
            return try c.withTransaction { try body($0) }
        }
    }

    static let at = Date(timeIntervalSince1970: 1_795_316_400)   // 2026-11-22T03:00:00Z
    /// GET CHALLENGE's answer in write-vectors.json.
    static let vectorChallenge: [UInt8] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF]

    static func writeCase(_ name: String) throws -> [String: Any] {
        let cases = try #require(Vectors.json("write-vectors.json")["cases"] as? [[String: Any]])
        return try #require(cases.first { $0["name"] as? String == name })
    }

    static func batchRecords(_ key: String) throws -> [[String: Any]] {
        let text = try #require(Vectors.json("receipt-and-batch.json")[key] as? String)
        let batch = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        return try #require(batch["records"] as? [[String: Any]])
    }

    @Test func vector0017StatusAndGrant() throws {
        let device = try Self.kioskDevice()
        let kiosk = Kiosk(device: device, clock: .fixed(Self.at))
        let e = Vectors.emulator("3307820000000017")
        e.setFixedChallenge(Self.vectorChallenge)
        let status = try onCard("", emulator: e) { try kiosk.check($0) }
        #expect(status.decision.code == .eligible && status.decision.programs.map(\.remainingFen) == [40000])
        let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 10000, billReference: "H01-20261122-000123") }
        #expect(o.decision.code == .granted && o.decision.subsidyFen == 10000 && o.decision.patientPaysFen == 0)
        #expect(o.decision.allocations.first?.usedAfterFen == 30000 && o.cardSequence == 4)
        // The card holds exactly write-vectors.json's record (sequence 4, DF48, DF46 by KSK-TEST-0001).
        let write = try Self.writeCase("write")
        #expect(e.usageObject.map { $0.hexString } == (write["usage_after"] as? String))
        // The settlement record matches the vector batch's record field for field, card_ack included.
        let expected = try Self.batchRecords("batch_body")[0]
        let record = o.records[0].wire
        #expect(Set(record.keys) == Set(expected.keys))
        for (k, v) in expected { #expect("\(record[k] ?? "missing")" == "\(v)", "\(k)") }

        let fresh = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let big = try onCard("3307820000000017") { try fresh.charge($0, billFen: 50000, billReference: "B2") }
        #expect(big.decision.subsidyFen == 40000 && big.decision.patientPaysFen == 10000)
    }

    @Test func vectorStatusRows() throws {
        let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let la = try onCard("3307820000100025") { try kiosk.check($0) }
        #expect(la.decision.code == .eligible && la.decision.programs.first?.program.code == "LA-DIRECT")
        #expect(la.decision.programs.first?.program.matters?.count == 8)
        let suspended = try onCard("3307820000000033") { try kiosk.check($0) }
        #expect(suspended.decision.code == .personSuspended && suspended.decision.detail == "停保")
        #expect(try onCard("3307820000000041") { try kiosk.check($0) }.decision.code == .cardLost)
        #expect(try onCard("3307820000000074") { try kiosk.check($0) }.decision.code == .cardUnknown)
        let e66 = Vectors.emulator("3307820000000066")
        let exhausted = try onCard("", emulator: e66) { try kiosk.check($0) }
        #expect(exhausted.decision.code == .eligible && exhausted.decision.programs.first?.remainingFen == 0)
        let before = e66.file(3)
        #expect(try onCard("", emulator: e66) { try kiosk.charge($0, billFen: 100, billReference: "X1") }.decision.code == .limitExhausted)
        #expect(e66.file(3) == before)
        // The forgeries of cards.json: name changed, cloned, a relay showing an older EF.USAGE.
        let forgeries = try #require(Vectors.json("cards.json")["forgeries"] as? [[String: Any]])
        let stale = try #require(forgeries.first { $0["name"] as? String == "stale_usage" }.flatMap { ($0["files"] as? [String: String])?["usage"] })
        let cases: [(Misbehaviour, String)] = [(Misbehaviour(tamperHolder: true), "issuer"), (Misbehaviour(wrongCardKey: true), "INTERNAL AUTHENTICATE"),
                                               (Misbehaviour(staleUsage: [UInt8](hex: stale)), "INTERNAL AUTHENTICATE")]
        for (m, reason) in cases {
            do {
                _ = try onCard("3307820000000017", m) { try kiosk.check($0) }
                Issue.record("a \(reason) failure was accepted")
            } catch let r as CardRefusal {
                #expect(r.code == .cardNotAuthentic && r.detail.contains(reason))
            }
        }
        #expect(try kiosk.device.store.records().filter { $0.kind == .alert }.count == 3)
    }

    @Test func vector0058SplitsOverTwoPrograms() throws {
        let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let e = Vectors.emulator("3307820000000058")
        e.setFixedChallenge(Self.vectorChallenge)
        let s = try onCard("", emulator: e) { try kiosk.check($0) }
        #expect(s.decision.programs.map(\.remainingFen) == [5000, 45000])
        let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 20000, billReference: "H01-20261122-000124") }
        #expect(o.decision.allocations.map(\.subsidyFen) == [5000, 15000] && o.decision.patientPaysFen == 0 && o.records.count == 2)
        #expect(e.usageObject.map { $0.hexString } == (try Self.writeCase("first_write_two_programs")["usage_after"] as? String))
        let expected = try Self.batchRecords("two_program_batch_body")
        for (r, x) in zip(o.records, expected) {
            for (k, v) in x { #expect("\(r.wire[k] ?? "missing")" == "\(v)", "\(k)") }
        }
    }

    @Test func vectorNewYearAndExpiredSnapshot() throws {
        let device = try Self.kioskDevice()
        let newYear = Kiosk(device: device, clock: .fixed(try #require(Timestamp.date("2027-01-02T03:00:00Z"))))
        let e = Vectors.emulator("3307820000000017")
        e.setFixedChallenge(Self.vectorChallenge)
        #expect(try onCard("", emulator: e) { try newYear.check($0) }.decision.programs.first?.remainingFen == 60000)
        let o = try onCard("", emulator: e) { try newYear.charge($0, billFen: 10000, billReference: "NY") }
        #expect(o.decision.code == .granted && o.cardSequence == 4)
        #expect(e.usageObject.map { $0.hexString } == (try Self.writeCase("new_period")["usage_after"] as? String))

        let expired = Kiosk(device: device, clock: .fixed(try #require(Timestamp.date("2027-02-01T00:00:00Z"))))
        for n in ["3307820000000017", "3307820000000058"] {
            #expect(try onCard(n) { try expired.charge($0, billFen: 100, billReference: "E-\(n)") }.decision.code == .snapshotExpired)
            #expect(try onCard(n) { try expired.check($0) }.decision.code == .eligible)
        }
    }

    /// Card spec §6 step 7: a torn write stays pending; presented again, the card decides. A
    /// record found on the card is committed with the acknowledgement of a confirming write.
    @Test func cardPulledDuringTheWriteResolvesOnPresentation() throws {
        for after in [false, true] {
            let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
            let e = Vectors.emulator("3307820000000017", Misbehaviour(pullBeforeWrite: !after, pullAfterWrite: after))
            let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 10000, billReference: "T\(after)") }
            #expect(o.decision.code == .cardRemoved && o.records.isEmpty)
            #expect(try kiosk.device.store.pendingDeductions().count == 1)
            let again = try onCard("", emulator: e) { try kiosk.check($0) }
            #expect(again.card.resolved.map(\.committed) == [after])
            #expect(try kiosk.device.store.pendingDeductions().isEmpty)
            let subsidies = try kiosk.device.store.records().filter { $0.kind == .medicalSubsidy }
            #expect(subsidies.count == (after ? 1 : 0))
            if after {
                // The confirming write's acknowledgement verifies with the card key over the
                // sequence and challenge the record names (what the hub checks).
                let j = subsidies[0].wire
                let seq = try #require(j["card_sequence"] as? Int)
                #expect(seq == 5)
                let ack = try #require((j["card_ack"] as? String).flatMap { Data(base64Encoded: $0) })
                let challenge = try #require((j["card_challenge"] as? String).flatMap { [UInt8](hex: $0) })
                let key = try Curve25519.Signing.PublicKey(rawRepresentation: try #require(Data(base64Encoded: Vectors.cards[0].card_public_key)))
                #expect(key.isValidSignature(ack, for: CardSession.ackMessage(cardNumber: "3307820000000017", sequence: UInt32(seq), challenge: challenge)))
            }
            // Remaining reflects exactly one deduction or none.
            #expect(again.decision.programs.first?.remainingFen == (after ? 30000 : 40000))
        }
    }

    /// A `90 00` without a valid acknowledgement is a torn write: nothing committed until the
    /// card shows the record. A fake card that pretends to have written gets nothing.
    @Test func aWriteWithoutAValidAcknowledgementIsTorn() throws {
        for applies in [true, false] {
            let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
            let e = Vectors.emulator("3307820000000017", Misbehaviour(ackFault: .invalid, ackFaultApplies: applies))
            let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 10000, billReference: "ACK-\(applies)") }
            #expect(o.decision.code == .cardRemoved && o.records.isEmpty)
            #expect(try kiosk.device.store.pendingDeductions().count == 1)
            e.setMisbehaviour(Misbehaviour())
            let again = try onCard("", emulator: e) { try kiosk.check($0) }
            #expect(again.card.resolved.map(\.committed) == [applies])
            let subsidies = try kiosk.device.store.records().filter { $0.kind == .medicalSubsidy }
            #expect(subsidies.count == (applies ? 1 : 0))
            #expect(again.decision.programs.first?.remainingFen == (applies ? 30000 : 40000))
        }
        // A card that keeps garbling its acknowledgements: the record is on it, so the
        // deduction counts (committed, L), with an empty card_ack and an alert for people.
        let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let e = Vectors.emulator("3307820000000017", Misbehaviour(ackFault: .missing))
        _ = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 10000, billReference: "ACK-X") }
        let again = try onCard("", emulator: e) { try kiosk.check($0) }
        #expect(again.card.resolved.map(\.committed) == [true])
        let records = try kiosk.device.store.records()
        #expect(records.filter { $0.kind == .medicalSubsidy }.first?.wire["card_ack"] as? String == "")
        #expect(records.contains { $0.kind == .alert && $0.wire["code"] as? String == "card_ack_missing" })
        #expect(again.decision.programs.first?.remainingFen == 30000)
    }

    /// Card spec §5.5: any refusal in the write sequence is card_write_refused with the
    /// command and status word; nothing deducted, no record queued.
    @Test func everyRefusedWriteIsCardWriteRefused() throws {
        let refusals: [(Misbehaviour, WriteCommand, UInt16)] = [
            (Misbehaviour(refuseCertificate: StatusWord(0x6982)), .verifyCertificate, 0x6982),
            (Misbehaviour(refuseChallenge: StatusWord(0x6985)), .getChallenge, 0x6985),
            (Misbehaviour(forceWriteStatus: StatusWord(0x6982)), .updateBinary, 0x6982),
            (Misbehaviour(forceWriteStatus: StatusWord(0x6985)), .updateBinary, 0x6985),
            (Misbehaviour(forceWriteStatus: StatusWord(0x6A80)), .updateBinary, 0x6A80),
            (Misbehaviour(refuseWrites: true), .updateBinary, 0x6581),
        ]
        for (m, command, sw) in refusals {
            let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
            let e = Vectors.emulator("3307820000000017", m)
            let before = e.usageObject
            let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 10000, billReference: "R-\(sw)") }
            #expect(o.decision.code == .cardWriteRefused, "\(command) \(sw)")
            #expect(o.writeRefusal?.command == command && o.writeRefusal?.status.value == sw)
            #expect(o.records.isEmpty && e.usageObject == before)
            #expect(try kiosk.device.store.pendingDeductions().isEmpty)
            #expect(try kiosk.device.store.records().filter { $0.kind == .medicalSubsidy }.isEmpty)
            // The bill is free for the next attempt: the refused deduction was voided.
            let ok = Kiosk(device: kiosk.device, clock: .fixed(Self.at))
            e.setMisbehaviour(Misbehaviour())
            #expect(try onCard("", emulator: e) { try ok.charge($0, billFen: 10000, billReference: "R-\(sw)") }.decision.code == .granted)
        }
    }

    /// Sync spec §5: no certificate, a retired device, a device the snapshot does not know:
    /// device_retired for subsidies; status checks still answer.
    @Test func anUncertifiedOrRetiredDeviceGrantsNothing() throws {
        let uncertified = Kiosk(device: try Self.kioskDevice(certificate: []), clock: .fixed(Self.at))
        #expect(try onCard("3307820000000017") { try uncertified.charge($0, billFen: 100, billReference: "U1") }.decision.code == .deviceRetired)
        #expect(try onCard("3307820000000017") { try uncertified.check($0) }.decision.code == .eligible)
        // KSK-TEST-0003 holds a valid certificate but is retired in the snapshot.
        let retired = Kiosk(device: try Self.kioskDevice(id: "KSK-TEST-0003"), clock: .fixed(Self.at))
        #expect(try onCard("3307820000000017") { try retired.charge($0, billFen: 100, billReference: "U2") }.decision.code == .deviceRetired)
        // A device the snapshot does not name, with a certificate from the test CA.
        let key = Curve25519.Signing.PrivateKey()
        let ca = Vectors.deviceCA.private
        let cert = try DeviceCertificate.issue(caKeyID: TestDevices.ca.id, caKey: ca, deviceID: "KSK-TEST-0009",
                                               devicePublicKey: [UInt8](key.publicKey.rawRepresentation),
                                               validFrom: try #require(CardDate("20261110")), validThrough: try #require(CardDate("20270207")))
        let dir = Scratch.folder("int")
        var unknown = try Device.provision(stateDir: dir, config: DeviceConfig(
            deviceID: "KSK-TEST-0009", institution: "330782-H01", profile: .hospital, issuerKeys: TestDevices.issuerKeys,
            authorityKeys: TestDevices.authorityKeys, deviceCAKeys: TestDevices.caKeys, hubURL: "http://127.0.0.1:9", printer: "file:/tmp",
            provisionedAt: "2026-11-22T00:00:00Z"), seed: key.rawRepresentation, replaceKey: false)
        try unknown.installCertificate(cert.encoded, now: Self.at)
        unknown = try Device(stateDir: dir)
        try unknown.store.installSnapshot(at: Vectors.url("snapshot-small.jsonl"), trustedAuthorities: unknown.trustedAuthorities, now: Self.at)
        let k = Kiosk(device: unknown, clock: .fixed(Self.at))
        let o = try onCard("3307820000000017") { try k.charge($0, billFen: 100, billReference: "U3") }
        #expect(o.decision.code == .deviceRetired && o.decision.detail.contains("not in the installed snapshot"))
        // After the certificate runs out (20270207, end of day CST) with a snapshot still valid
        // in this test's terms: device_retired comes before snapshot_expired.
        let late = Kiosk(device: try Self.kioskDevice(), clock: .fixed(try #require(Timestamp.date("2027-02-07T16:00:00Z"))))
        #expect(try onCard("3307820000000017") { try late.charge($0, billFen: 100, billReference: "U4") }.decision.code == .deviceRetired)
    }

    @Test func legalAidApplication() throws {
        let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let o = try onCard("3307820000100025") { try kiosk.applyLegalAid($0, matter: "labor_remuneration", contactPhone: "13800000000") }
        let r = try #require(o.record)
        #expect(r.kind == .legalAidApplication && r.wire["matter"] as? String == "labor_remuneration" && r.wire["priority"] as? Bool == true)
        #expect(r.wire["person_ref"] as? String == "8919243b61b2010949797f63b0328dfc" && r.wire["id_hash"] == nil)
        #expect(try onCard("3307820000100025") { try kiosk.applyLegalAid($0, matter: "no_such_matter", contactPhone: nil) }.record == nil)
        #expect(try onCard("3307820000000033") { try kiosk.applyLegalAid($0, matter: "labor_remuneration", contactPhone: nil) }.decision.code == .personSuspended)
    }
}
