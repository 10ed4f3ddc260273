import KioskProtocol
import Foundation
import GRDB
import KioskCore
import KioskStore
import Testing

@Suite struct LedgerTests {
    let ih17 = "997bb21c2fd71da3a74ad22ada8a3d3e"   // …0017's person_ref (DF2A)
    let challenge = [UInt8](0..<16)
    let ack = [UInt8](repeating: 0xA5, count: 64)

    func ready() throws -> Device {
        let d = try Fixture.device()
        try d.store.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        return d
    }

    func decide(_ d: Device, bill: Fen) throws -> SubsidyDecision {
        let card = CardFacts(cardNumber: "3307820000000017", kind: .medical, category: "01", expired: false, cardUsedFen: ["HM-SUBSIDY": 12000])
        return Decide.subsidy(card: card, view: try d.store.view(cardNumber: "3307820000000017", period: "2026"), billFen: bill, now: Fixture.now)
    }

    func deduct(_ d: Device, bill: Fen, ref: String) throws -> (Int64, SubsidyDecision) {
        let decision = try decide(d, bill: bill)
        let id = try d.store.beginDeduction(device: d.context, cardNumber: "3307820000000017", personRef: ih17, period: "2026",
                                            cardFen: ["HM-SUBSIDY": 12000], decision: decision, billReference: ref,
                                            cardSequence: 4, usageObject: [0x72, 0x00], cardChallenge: challenge, now: Fixture.now)
        return (id, decision)
    }

    /// Durable before "granted" (upload spec §4): every commit of the writer is fsynced.
    @Test func theWriterCommitsWithSynchronousFull() throws {
        #expect(try ready().store.writerSynchronous() == 2)
    }

    @Test func pendingCountsCommittedRecordsVoidedDoesNot() throws {
        let d = try ready()
        let (id, _) = try deduct(d, bill: 10000, ref: "B1")
        #expect(try d.store.view(cardNumber: "3307820000000017", period: "2026")?.usage["HM-SUBSIDY"]?.localFen == 10000)
        let records = try d.store.commitDeduction(id, device: d.context, ack: ack, now: Fixture.now)
        #expect(records.map(\.recordID) == ["KSK-TEST-0001-1"])
        let body = records[0].wire
        #expect(body["kind"] as? String == "medical_subsidy" && body["seq"] as? Int == 1 && body["subsidy_fen"] as? Int == 10000)
        #expect(body["used_before_fen"] as? Int == 20000 && body["used_after_fen"] as? Int == 30000 && body["card_sequence"] as? Int == 4)
        #expect(body["institution"] as? String == "330782-H01" && body["snapshot_id"] as? String == "330782-20261122-01")
        // Version 2: the person by reference, the write's challenge and the card's acknowledgement.
        #expect(body["person_ref"] as? String == ih17 && body["id_hash"] == nil)
        #expect(body["card_challenge"] as? String == "000102030405060708090a0b0c0d0e0f")
        #expect(body["card_ack"] as? String == Data(ack).base64EncodedString())
        // Committing again hands back the same records: exactly once.
        #expect(try d.store.commitDeduction(id, device: d.context, ack: ack, now: Fixture.now).map(\.recordID) == ["KSK-TEST-0001-1"])
        #expect(try d.store.view(cardNumber: "3307820000000017", period: "2026")?.usage["HM-SUBSIDY"]?.localFen == 10000)

        let (id2, _) = try deduct(d, bill: 5000, ref: "B2")
        try d.store.voidDeduction(id2, now: Fixture.now, resolution: "test")
        #expect(try d.store.view(cardNumber: "3307820000000017", period: "2026")?.usage["HM-SUBSIDY"]?.localFen == 10000)
        #expect(try d.store.lastSequence(deviceID: "KSK-TEST-0001") == 1)
    }

    @Test func theWritePathRefusesStaleAndOverLimitDecisions() throws {
        let d = try ready()
        let stale = try decide(d, bill: 30000)
        let (id, _) = try deduct(d, bill: 30000, ref: "B1")
        try d.store.commitDeduction(id, device: d.context, ack: ack, now: Fixture.now)
        // The first decision no longer holds: used moved from 20000 to 50000.
        #expect(throws: LedgerError.staleDecision(program: "HM-SUBSIDY")) {
            try d.store.beginDeduction(device: d.context, cardNumber: "3307820000000017", personRef: ih17, period: "2026", cardFen: ["HM-SUBSIDY": 12000],
                                       decision: stale, billReference: "B2", cardSequence: 5, usageObject: [0x72, 0x00], cardChallenge: challenge, now: Fixture.now)
        }
        // A forged decision past the limit.
        let forged = SubsidyDecision(code: .granted, detail: "", billFen: 20000,
                                     allocations: [Allocation(program: "HM-SUBSIDY", subsidyFen: 20000, usedBeforeFen: 50000, usedAfterFen: 70000)])
        #expect(throws: LedgerError.overLimit(program: "HM-SUBSIDY")) {
            try d.store.beginDeduction(device: d.context, cardNumber: "3307820000000017", personRef: ih17, period: "2026", cardFen: ["HM-SUBSIDY": 12000],
                                       decision: forged, billReference: "B3", cardSequence: 5, usageObject: [0x72, 0x00], cardChallenge: challenge, now: Fixture.now)
        }
        #expect(throws: LedgerError.duplicateBill("B1")) { _ = try deduct(d, bill: 100, ref: "B1") }
        _ = try deduct(d, bill: 100, ref: "B4")
        #expect(throws: LedgerError.pendingExists(cardNumber: "3307820000000017")) { _ = try deduct(d, bill: 100, ref: "B5") }
    }

    @Test func settledThroughDecidesWhatLCounts() throws {
        let d = try ready()
        let (id, _) = try deduct(d, bill: 10000, ref: "B1")
        let r = try d.store.commitDeduction(id, device: d.context, ack: ack, now: Fixture.now)[0]
        // Acknowledged after settled_through (01:59): the snapshot does not count it yet.
        try d.store.markDelivered(recordID: r.recordID, status: .accepted, receivedAt: "2026-11-22T03:00:05Z", reason: nil)
        #expect(try d.store.view(cardNumber: "3307820000000017", period: "2026")?.usage["HM-SUBSIDY"]?.localFen == 10000)
        // A newer snapshot settled through after it counts it in S; L drops it.
        var h = Fixture.vectorHeader
        h["snapshot_id"] = "330782-20261123-01"; h["issued_at"] = "2026-11-23T02:00:00Z"; h["settled_through"] = "2026-11-23T01:59:00Z"
        let records = Fixture.vectorRecords.map { rec -> [String: Any] in
            var rec = rec
            if rec["type"] as? String == "usage", rec["person_ref"] as? String == ih17, rec["period"] as? String == "2026" { rec["used_fen"] = 30000 }
            return rec
        }
        try d.store.installSnapshot(at: Fixture.snapshot(header: h, records: records), trustedAuthorities: Fixture.authorities,
                                    now: try #require(Timestamp.date("2026-11-23T03:00:00Z")))
        #expect(try d.store.view(cardNumber: "3307820000000017", period: "2026")?.usage["HM-SUBSIDY"] == UsageFigures(snapshotFen: 30000, localFen: 0))
    }

    @Test func reversalsOnceAndOnlyOfSubsidies() throws {
        let d = try ready()
        let (id, _) = try deduct(d, bill: 10000, ref: "B1")
        let r = try d.store.commitDeduction(id, device: d.context, ack: ack, now: Fixture.now)[0]
        let rv = try d.store.reverse(recordID: r.recordID, reason: "wrong patient", operator: "op-7", device: d.context, now: Fixture.now)
        #expect(rv.recordID == "KSK-TEST-0001-2" && rv.wire["reverses"] as? String == r.recordID && rv.wire["amount_fen"] as? Int == 10000)
        #expect(try d.store.view(cardNumber: "3307820000000017", period: "2026")?.usage["HM-SUBSIDY"]?.localFen == 0)
        #expect(throws: LedgerError.alreadyReversed(r.recordID)) {
            try d.store.reverse(recordID: r.recordID, reason: "again", operator: "op-7", device: d.context, now: Fixture.now)
        }
        #expect(throws: LedgerError.notReversible(rv.recordID)) {
            try d.store.reverse(recordID: rv.recordID, reason: "x", operator: "op-7", device: d.context, now: Fixture.now)
        }
        #expect(throws: LedgerError.unknownRecord("KSK-TEST-0001-99")) {
            try d.store.reverse(recordID: "KSK-TEST-0001-99", reason: "x", operator: "op-7", device: d.context, now: Fixture.now)
        }
    }

    @Test func recordsAreNeverEditedNorDroppedBeforeAcknowledgement() throws {
        let d = try ready()
        let a = try d.store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "paper out", now: Fixture.now)
        #expect(throws: DatabaseError.self) {
            try d.store.pool.write { try $0.execute(sql: "UPDATE record SET body = '{}' WHERE record_id = ?", arguments: [a.recordID]) }
        }
        #expect(throws: DatabaseError.self) {
            try d.store.pool.write { try $0.execute(sql: "DELETE FROM record WHERE record_id = ?", arguments: [a.recordID]) }
        }
        #expect(try d.store.record(a.recordID)?.body == a.body)
    }

    @Test func sequenceIsGaplessAndSurvivesReprovisioning() throws {
        let d = try ready()
        for i in 0..<5 { try d.store.recordAlert(device: d.context, code: "clock_suspect", cardNumber: nil, detail: "\(i)", now: Fixture.now) }
        let again = try Device.provision(stateDir: d.stateDir, config: d.config, seed: nil, replaceKey: false)
        #expect(again.signingKey.publicKey.rawRepresentation == d.signingKey.publicKey.rawRepresentation)
        let r = try again.store.recordAlert(device: again.context, code: "clock_suspect", cardNumber: nil, detail: "after", now: Fixture.now)
        #expect(r.seq == 6)
        #expect(try again.store.records().map(\.seq) == [1, 2, 3, 4, 5, 6])
        // Another device identifier is refused in this folder; another key needs --replace-key.
        var other = d.config
        other.deviceID = "KSK-TEST-0002"
        #expect(throws: DeviceError.self) { try Device.provision(stateDir: d.stateDir, config: other, seed: nil, replaceKey: false) }
        #expect(throws: DeviceError.self) { try Device.provision(stateDir: d.stateDir, config: d.config, seed: Data(repeating: 1, count: 32), replaceKey: false) }
        let attrs = try FileManager.default.attributesOfItem(atPath: d.stateDir.appendingPathComponent("device.key").path)
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
    }

    /// Issue 8 item 5 / fail closed: an unreadable allocations column is an error, never
    /// "nothing allocated" (that would undercount L).
    @Test func unreadableAllocationsFailClosed() throws {
        let d = try ready()
        _ = try deduct(d, bill: 10000, ref: "B1")
        try d.store.pool.write { try $0.execute(sql: "UPDATE deduction SET allocations = 'garbage'") }
        #expect(throws: StoreError.self) { _ = try d.store.view(cardNumber: "3307820000000017", period: "2026") }
        #expect(throws: StoreError.self) { _ = try d.store.pendingDeductions() }
    }

    /// Sync spec §6: records and card writes raise the floor, never lower it; a reset
    /// restarts it from the clock's reading with an alert that says who and why.
    @Test func theClockFloorRisesAndResets() throws {
        let d = try ready()
        #expect(try d.store.clockFloor().floor == nil || true)
        let later = Fixture.now.addingTimeInterval(3600)
        try d.store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "x", now: later)
        #expect(try d.store.clockFloor().floor == later)
        // A record made with the clock back does not lower it.
        try d.store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "y", now: Fixture.now)
        let floor = try d.store.clockFloor()
        #expect(floor.floor == later)
        #expect(floor.suspicion(at: later.addingTimeInterval(-599)) == nil)
        #expect(floor.suspicion(at: later.addingTimeInterval(-601)) != nil)
        // The alert is raised once.
        #expect(try d.store.noteClockSuspect(now: Fixture.now, device: d.context, detail: "test") == true)
        #expect(try d.store.noteClockSuspect(now: Fixture.now, device: d.context, detail: "test") == false)
        let r = try d.store.resetClockFloor(now: Fixture.now, operator: "TECH-1", reason: "RTC battery replaced", device: d.context)
        #expect(r.wire["code"] as? String == "clock_reset" && r.wire["operator"] as? String == "TECH-1")
        let after = try d.store.clockFloor()
        #expect(after.floor == Fixture.now && after.resetBy == "TECH-1" && after.suspectSince == nil)
        #expect(after.suspicion(at: Fixture.now) == nil)
    }
}

/// Records are read through the shared model (`SettlementRecord`), and a body that cannot be
/// read is an error, not an empty record.
@Suite struct StoredRecordModelTests {
    @Test func aCommittedSubsidyReadsBackAsTheModel() throws {
        let d = try Fixture.device()
        _ = try d.store.installSnapshot(at: Fixture.snapshot(), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        let r = try d.store.recordAlert(device: d.context, code: "printer_fault", cardNumber: "3307820000000017", detail: "paper out", now: Fixture.now)
        #expect(r.kind == .alert)
        let model = try r.record()
        #expect(model.recordID == r.recordID && model.seq == r.seq && model.alert?.code == "printer_fault")
        #expect(model.alert?.cardNumber == "3307820000000017" && model.snapshotID == "330782-20261122-01")
    }

    @Test func anUnreadableBodyIsACorruptStoreNotAnEmptyRecord() throws {
        let d = try Fixture.device()
        let r = try d.store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "paper out", now: Fixture.now)
        // Damage the stored body behind the store's back (a bad disk sector, a hand edit).
        try d.store.pool.write { db in
            try db.execute(sql: "DROP TRIGGER record_never_edited")
            try db.execute(sql: "UPDATE record SET body = '{\"kind\":\"alert\"}' WHERE record_id = ?", arguments: [r.recordID])
        }
        let damaged = try #require(try d.store.record(r.recordID))
        #expect { try damaged.record() } throws: { ($0 as? StoreError)?.kind == .corrupt }
    }
}

/// `Timestamp.string` (every record's `created_at`) formats without Foundation's formatter,
/// which is not `Sendable`: it must say exactly what that formatter says.
@Suite struct TimestampFormatTests {
    @Test func sameAsISO8601DateFormatter() {
        let foundation = ISO8601DateFormatter()
        foundation.formatOptions = [.withInternetDateTime]
        var instants: [TimeInterval] = [0, -1, -0.5, 0.999, 59.999, 86_399.9, 951_782_400, 1_795_316_400, 1_795_316_400.75,
                                        4_102_444_799, 253_402_300_799, -11_676_096_000, -12_219_292_800, -62_135_596_800]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<20_000 {   // SplitMix64 over 1583…9999
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            instants.append(-12_212_553_600 + Double(z % 265_614_854_400) + Double(z % 1000) / 1000)
        }
        for t in instants {
            let d = Date(timeIntervalSince1970: t)
            #expect(Timestamp.string(d) == foundation.string(from: d), "\(t)")
        }
    }
}
