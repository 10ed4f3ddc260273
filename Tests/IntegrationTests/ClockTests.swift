import BenefitCard
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import SmartCard
import TestVectors
import Testing
import VirtualCard

/// Clock integrity (sync spec §6, card spec §5.5) through pcscd: a kiosk clock that is wrong
/// in either direction, and cards whose time is ahead, never grant over the limit.
extension PCSCIntegrationTests {
    static func date(_ s: String) throws -> Date { try #require(Timestamp.date(s)) }

    /// Subsidies counted per person, program and period from every kiosk's records.
    static func granted(_ devices: [Device]) throws -> [String: Fen] {
        var out: [String: Fen] = [:]
        for d in devices {
            for r in try d.store.records() where r.kind == .medicalSubsidy || r.kind == .subsidyReversal {
                let j = r.wire
                if r.kind == .medicalSubsidy {
                    out["\(j["person_ref"] ?? "")|\(j["program"] ?? "")|\(j["period"] ?? "")", default: 0] += (j["subsidy_fen"] as? Int).map(Fen.init) ?? 0
                }
            }
        }
        return out
    }

    @Test func aClockBehindTheFloorRefusesSubsidiesUntilReset() throws {
        let device = try Self.kioskDevice()
        // Ten days back: the certificate (from 20261110) still holds, the snapshot was issued
        // 2026-11-22T02:00Z: the clock reads before what the kiosk has seen.
        let behind = Kiosk(device: device, clock: .fixed(try Self.date("2026-11-12T03:00:00Z")))
        let e = Vectors.emulator("3307820000000017")
        let before = e.usageObject
        for _ in 0..<2 {
            let o = try onCard("", emulator: e) { try behind.charge($0, billFen: 100, billReference: "CLK") }
            #expect(o.decision.code == .clockSuspect)
        }
        #expect(e.usageObject == before)
        // Status checks still answer; the alert is raised once.
        #expect(try onCard("", emulator: e) { try behind.check($0) }.decision.code == .eligible)
        let alerts = try device.store.records().filter { $0.kind == .alert && $0.wire["code"] as? String == "clock_suspect" }
        #expect(alerts.count == 1)
        // A technician sets the clock right… no: here the clock stays where it is and the
        // technician resets the floor: it restarts from the clock's reading.
        try device.store.resetClockFloor(now: behind.clock.now(), operator: "TECH-7", reason: "clock checked", device: device.context)
        #expect(try onCard("", emulator: e) { try behind.charge($0, billFen: 100, billReference: "CLK") }.decision.code == .granted)
    }

    @Test func aClockYearsBehindGrantsNothing() throws {
        for back in ["2025-11-22T03:00:00Z", "2024-11-22T03:00:00Z"] {
            let device = try Self.kioskDevice()
            let kiosk = Kiosk(device: device, clock: .fixed(try Self.date(back)))
            let e = Vectors.emulator("3307820000000017")
            let o = try onCard("", emulator: e) { try kiosk.charge($0, billFen: 10000, billReference: "Y\(back)") }
            // The certificate is not yet valid at that clock: device_retired comes first (§6 order).
            #expect(o.decision.code == .deviceRetired || o.decision.code == .clockSuspect, "\(back): \(o.decision.code)")
            #expect(!o.decision.isGranted && o.records.isEmpty)
            #expect(try onCard("", emulator: e) { try kiosk.check($0) }.decision.code == .eligible)
        }
    }

    /// Six weeks fast writes next year's period on the card. A correct kiosk then refuses that
    /// card (its time is ahead), and the fast kiosk, once set right, refuses everything until
    /// a technician resets its floor: no period ever gets more than its limit.
    @Test func aClockSixWeeksFastCannotGrantTwice() throws {
        let fastDevice = try Self.kioskDevice()
        let fast = Kiosk(device: fastDevice, clock: .fixed(try Self.date("2027-01-03T03:00:00Z")))
        let e = Vectors.emulator("3307820000000017")
        let o = try onCard("", emulator: e) { try fast.charge($0, billFen: 60000, billReference: "FAST") }
        #expect(o.decision.code == .granted && o.decision.subsidyFen == 60000)
        #expect(try UsageRecord(fileBytes: try #require(e.usageObject)).body?.period == "2027")

        let rightDevice = try Self.kioskDevice()
        let right = Kiosk(device: rightDevice, clock: .fixed(try Self.date("2026-11-22T03:10:00Z")))
        let refused = try onCard("", emulator: e) { try right.charge($0, billFen: 60000, billReference: "RIGHT") }
        #expect(refused.decision.code == .clockSuspect)
        #expect(try onCard("", emulator: e) { try right.check($0) }.decision.code == .eligible)
        // Other cards are served by the correct kiosk.
        #expect(try onCard("3307820000000058") { try right.charge($0, billFen: 100, billReference: "OTHER") }.decision.code == .granted)

        // The fast kiosk, set right, reads before its floor (its own records of 2027-01-03).
        let setRight = Kiosk(device: fastDevice, clock: .fixed(try Self.date("2026-11-22T03:20:00Z")))
        #expect(try onCard("3307820000000058") { try setRight.charge($0, billFen: 100, billReference: "AFTER") }.decision.code == .clockSuspect)

        let totals = try Self.granted([fastDevice, rightDevice])
        #expect(totals["997bb21c2fd71da3a74ad22ada8a3d3e|HM-SUBSIDY|2027"] == 60000)
        #expect(totals["997bb21c2fd71da3a74ad22ada8a3d3e|HM-SUBSIDY|2026"] == nil)
    }

    /// The year turns at midnight China Standard Time (16:00 UTC): a write just after it is
    /// period 2027 (the card accepts it), and a kiosk a few minutes behind, still in 2026,
    /// refuses that card rather than write 2026 over it.
    @Test func acrossTheNewYearInChinaStandardTime() throws {
        let device = try Self.kioskDevice()
        let e = Vectors.emulator("3307820000000017")
        let lastMinute = Kiosk(device: device, clock: .fixed(try Self.date("2026-12-31T15:59:00Z")))
        let a = try onCard("", emulator: e) { try lastMinute.charge($0, billFen: 40000, billReference: "NY-1") }
        #expect(a.decision.code == .granted && a.decision.subsidyFen == 40000)
        let newYear = Kiosk(device: device, clock: .fixed(try Self.date("2026-12-31T16:00:30Z")))
        let b = try onCard("", emulator: e) { try newYear.charge($0, billFen: 60000, billReference: "NY-2") }
        #expect(b.decision.code == .granted && b.decision.subsidyFen == 60000)
        let held = try UsageRecord(fileBytes: try #require(e.usageObject))
        #expect(held.body?.period == "2027" && held.body?.writtenAt == "2026-12-31T16:00:30Z")
        let other = try Self.kioskDevice()
        let behind = Kiosk(device: other, clock: .fixed(try Self.date("2026-12-31T15:56:00Z")))
        #expect(try onCard("", emulator: e) { try behind.charge($0, billFen: 100, billReference: "NY-3") }.decision.code == .clockSuspect)
        let totals = try Self.granted([device, other])
        #expect(totals["997bb21c2fd71da3a74ad22ada8a3d3e|HM-SUBSIDY|2026"] == 40000)
        #expect(totals["997bb21c2fd71da3a74ad22ada8a3d3e|HM-SUBSIDY|2027"] == 60000)
    }

    /// Card spec §5.5: a card DF45 up to 10 minutes ahead is tolerated (the kiosk writes the
    /// card's time); more than 10 minutes ahead refuses that card only.
    @Test func aCardAheadOfTheClock() throws {
        let e = Vectors.emulator("3307820000000017")
        let ahead = Kiosk(device: try Self.kioskDevice(), clock: .fixed(try Self.date("2026-11-22T03:08:00Z")))
        #expect(try onCard("", emulator: e) { try ahead.charge($0, billFen: 100, billReference: "A1") }.decision.code == .granted)
        let slightlyBehind = Kiosk(device: try Self.kioskDevice(), clock: .fixed(Self.at))
        let o = try onCard("", emulator: e) { try slightlyBehind.charge($0, billFen: 100, billReference: "A2") }
        #expect(o.decision.code == .granted)
        #expect(try UsageRecord(fileBytes: try #require(e.usageObject)).body?.writtenAt == "2026-11-22T03:08:00Z")

        let farAhead = Kiosk(device: try Self.kioskDevice(), clock: .fixed(try Self.date("2026-11-22T04:00:00Z")))
        #expect(try onCard("", emulator: e) { try farAhead.charge($0, billFen: 100, billReference: "A3") }.decision.code == .granted)
        let late = Kiosk(device: try Self.kioskDevice(), clock: .fixed(try Self.date("2026-11-22T03:45:00Z")))
        let refused = try onCard("", emulator: e) { try late.charge($0, billFen: 100, billReference: "A4") }
        #expect(refused.decision.code == .clockSuspect)
        #expect(try late.device.store.records().contains { $0.kind == .alert && $0.wire["code"] as? String == "clock_suspect" && $0.wire["card_number"] as? String == "3307820000000017" })
        #expect(try onCard("3307820000000058") { try late.charge($0, billFen: 100, billReference: "A5") }.decision.code == .granted)
    }
}
