import BenefitCard
import Crypto
import Entitlements
import Foundation
import KioskCore
import KioskStore
import SmartCard
import TestVectors
import Testing
import VirtualCard

/// Every row of vectors/README.md "Expected decisions", through pcscd + vpcd + the emulator.
extension PCSCIntegrationTests {
    static func kioskDevice() throws -> Device {
        let dir = Scratch.folder("int")
        let keys = Vectors.keys
        let d = try Device.provision(stateDir: dir, config: DeviceConfig(
            deviceID: "KSK-TEST-0001", institution: "330782-H01", profile: .hospital,
            issuerKeys: ["330782-issuer-test": (keys["issuer"] as! [String: String])["public_key"]!],
            authorityKeys: ["330782-auth-test": (keys["authority"] as! [String: String])["public_key"]!],
            hubURL: "http://127.0.0.1:9", printer: "file:/tmp", provisionedAt: "2026-11-22T00:00:00Z"),
            seed: Data(base64Encoded: ((keys["devices"] as! [String: [String: String]])["KSK-TEST-0001"]!)["private_seed"]!), replaceKey: false)
        let authority = Curve25519.Signing.PublicKey.self
        _ = authority
        try d.store.installSnapshot(at: Vectors.url("snapshot-small.jsonl"), trustedAuthorities: d.trustedAuthorities,
                                   now: Timestamp.date("2026-11-22T03:00:00Z")!)
        return d
    }

    func onCard<T>(_ number: String, _ m: Misbehaviour = Misbehaviour(), emulator: CardEmulator? = nil, _ body: (CardConnection) throws -> T) throws -> T {
        try Harness.withCard(emulator ?? Vectors.emulator(number, m)) { ctx, _ in
            let c = try ctx.connect(reader: Harness.reader)
            return try c.withTransaction { try body($0) }
        }
    }

    static let at = Timestamp.date("2026-11-22T03:00:00Z")!

    @Test func vector0017StatusAndGrant() throws {
        let device = try Self.kioskDevice()
        let kiosk = Kiosk(device: device, clock: .fixed(Self.at))
        let e = Vectors.emulator("3307820000000017")
        let status = try onCard("", emulator: e) { try kiosk.check($0) }
        #expect(status.decision.code == .eligible && status.decision.programs.map(\.remainingFen) == [40000])
        let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 10000, billReference: "H01-20261122-000123") }
        #expect(o.decision.code == .granted && o.decision.subsidyFen == 10000 && o.decision.patientPaysFen == 0)
        #expect(o.decision.allocations.first?.usedAfterFen == 30000 && o.cardSequence == 4)
        let card = try UsageRecord(fileBytes: e.file(3)!)
        #expect(card.sequence == 4 && card.body?.period == "2026" && card.body?.entries == [.init(program: "HM-SUBSIDY", usedFen: 30000)])
        #expect(card.trust(deviceKeys: ["KSK-TEST-0001": device.signingKey.publicKey]) == .trusted(deviceID: "KSK-TEST-0001"))
        // The settlement record matches the vector batch's record field for field.
        let vector = try JSONSerialization.jsonObject(with: Data(contentsOf: Vectors.url("receipt-and-batch.json"))) as! [String: Any]
        let batch = try JSONSerialization.jsonObject(with: Data((vector["batch_body"] as! String).utf8)) as! [String: Any]
        let expected = (batch["records"] as! [[String: Any]])[0]
        let record = o.records[0].json
        for (k, v) in expected { #expect("\(record[k]!)" == "\(v)", "\(k)") }

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
        for (m, reason) in [(Misbehaviour(tamperHolder: true), "issuer"), (Misbehaviour(wrongCardKey: true), "INTERNAL AUTHENTICATE")] {
            do {
                _ = try onCard("3307820000000017", m) { try kiosk.check($0) }
                Issue.record("a \(reason) failure was accepted")
            } catch let r as CardRefusal {
                #expect(r.code == .cardNotAuthentic && r.detail.contains(reason))
            }
        }
        #expect(try kiosk.device.store.records().filter { $0.kind == "alert" }.count == 2)
    }

    @Test func vector0058SplitsOverTwoPrograms() throws {
        let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let e = Vectors.emulator("3307820000000058")
        let s = try onCard("", emulator: e) { try kiosk.check($0) }
        #expect(s.decision.programs.map(\.remainingFen) == [5000, 45000])
        let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 20000, billReference: "B58") }
        #expect(o.decision.allocations.map(\.subsidyFen) == [5000, 15000] && o.decision.patientPaysFen == 0 && o.records.count == 2)
        let card = try UsageRecord(fileBytes: e.file(3)!)
        #expect(card.sequence == 1 && card.body?.entries == [.init(program: "HM-SUBSIDY", usedFen: 60000), .init(program: "HM-CS-OUTPATIENT", usedFen: 15000)])
    }

    @Test func vectorNewYearAndExpiredSnapshot() throws {
        let device = try Self.kioskDevice()
        let newYear = Kiosk(device: device, clock: .fixed(Timestamp.date("2027-01-02T03:00:00Z")!))
        let e = Vectors.emulator("3307820000000017")
        #expect(try onCard("", emulator: e) { try newYear.check($0) }.decision.programs.first?.remainingFen == 60000)
        let o = try onCard("", emulator: e) { try newYear.charge($0, billFen: 10000, billReference: "NY") }
        #expect(o.decision.code == .granted && o.cardSequence == 4)
        let card = try UsageRecord(fileBytes: e.file(3)!)
        #expect(card.body?.period == "2027" && card.body?.entries == [.init(program: "HM-SUBSIDY", usedFen: 10000)])

        let expired = Kiosk(device: device, clock: .fixed(Timestamp.date("2027-02-01T00:00:00Z")!))
        for n in ["3307820000000017", "3307820000000058"] {
            #expect(try onCard(n) { try expired.charge($0, billFen: 100, billReference: "E-\(n)") }.decision.code == .snapshotExpired)
            #expect(try onCard(n) { try expired.check($0) }.decision.code == .eligible)
        }
    }

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
            #expect(try kiosk.device.store.records().filter { $0.kind == "medical_subsidy" }.count == (after ? 1 : 0))
            // Remaining reflects exactly one deduction or none.
            #expect(again.decision.programs.first?.remainingFen == (after ? 30000 : 40000))
        }
    }

    @Test func legalAidApplication() throws {
        let kiosk = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let o = try onCard("3307820000100025") { try kiosk.applyLegalAid($0, matter: "labor_remuneration", contactPhone: "13800000000") }
        let r = try #require(o.record)
        #expect(r.kind == "legal_aid_application" && r.json["matter"] as? String == "labor_remuneration" && r.json["priority"] as? Bool == true)
        #expect(try onCard("3307820000100025") { try kiosk.applyLegalAid($0, matter: "no_such_matter", contactPhone: nil) }.record == nil)
        #expect(try onCard("3307820000000033") { try kiosk.applyLegalAid($0, matter: "labor_remuneration", contactPhone: nil) }.decision.code == .personSuspended)
    }
}
