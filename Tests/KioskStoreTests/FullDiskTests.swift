import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import TestVectors
import Testing
import VirtualCard

/// A real full disk: the state folder on a small tmpfs, filled up. New subsidies stop with
/// a clear error before the card is written; nothing already recorded is lost; freeing
/// space lets the kiosk go on. Needs root (mount), as CI and the test command run.
@Suite(.serialized) struct FullDiskTests {
    @Test(.enabled(if: getuid() == 0)) func aFullDiskStopsSubsidiesAndLosesNothing() async throws {
        // Blocking work (mount, filling the disk, the ledger): on a thread of its own, off the
        // test pool (with the serialized card suite holding one of its two threads, a blocking
        // test on the other starved every async test's deadline).
        try await onOwnThread { try withSmallDisk("2m", under: Fixture.tempDir()) { try Self.fullDisk(at: $0) } }
    }

    static func fullDisk(at mountPoint: URL) throws {
        let stateDir = mountPoint.appendingPathComponent("state")
        let base = try Fixture.device()
        try Device.provision(stateDir: stateDir, config: base.config, seed: base.signingKey.rawRepresentation, replaceKey: false)
            .installCertificate(TestDevices.certificate("KSK-TEST-0001"), now: Fixture.now)
        let device = try Device(stateDir: stateDir)
        try device.store.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        let kiosk = Kiosk(device: device, clock: .fixed(Fixture.now))
        let cards = try CardDescription.decode(Data(contentsOf: Fixture.url("cards.json")))
        let e17 = try CardEmulator(description: try #require(cards.first { $0.cardNumber == "3307820000000017" }))
        let first = try kiosk.charge(EmulatedChannel(e17), billFen: 1000, billReference: "D1")
        #expect(first.decision.isGranted)

        // Fill the disk.
        let filler = mountPoint.appendingPathComponent("filler")
        FileManager.default.createFile(atPath: filler.path, contents: nil)
        let h = try FileHandle(forWritingTo: filler)
        let chunk = Data(repeating: 0xAB, count: 64 * 1024)
        while (try? h.write(contentsOf: chunk)) != nil {}
        try? h.close()

        let before = e17.file(3)
        do {
            _ = try kiosk.charge(EmulatedChannel(e17), billFen: 1000, billReference: "D2")
            Issue.record("a subsidy went through on a full disk")
        } catch let e as StoreError {
            #expect(e.kind == .diskFull && e.description.contains("disk is full"))
        }
        #expect(e17.file(3) == before)   // the card was not written
        #expect(try device.store.records().map(\.recordID) == first.records.map(\.recordID))
        // A card leaving now checkpoints the WAL on the full disk (issue 24 item 4): it may
        // fail, and it loses nothing; the WAL keeps every page.
        do { _ = try device.store.checkpointWhenIdle(minimumPages: 1) } catch is StoreError {}
        #expect(try device.store.records().map(\.recordID) == first.records.map(\.recordID))

        try FileManager.default.removeItem(at: filler)
        let after = try kiosk.charge(EmulatedChannel(e17), billFen: 1000, billReference: "D2")
        #expect(after.decision.isGranted && after.records.first?.seq == 2)
        _ = try device.store.checkpointWhenIdle(minimumPages: 1)
        #expect(try WalCheckpointTests.recordsInTheFileAlone(device.store) == 2)
    }

    /// Issue 11: a full install stages its rows in a file beside the store. On a disk that
    /// cannot hold them the install is a storage refusal, the installed snapshot keeps
    /// serving, and no staging file is left behind to fill the disk further.
    @Test(.enabled(if: getuid() == 0)) func aFullInstallThatDoesNotFitLeavesTheInstalledSnapshotAndNoStagingFile() async throws {
        // Seconds of blocking work (60,000 records written, then installed): on a thread of its
        // own, off the test pool, which two such tests at once would starve.
        try await onOwnThread { try withSmallDisk("2m", under: Fixture.tempDir()) { try Self.installThatDoesNotFit(at: $0) } }
    }

    static func installThatDoesNotFit(at mountPoint: URL) throws {
        let store = try KioskStore(path: mountPoint.appendingPathComponent("kiosk.sqlite").path)
        try store.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        var header = Fixture.vectorHeader
        header["snapshot_id"] = "330782-20261122-02"
        header["issued_at"] = "2026-11-22T02:30:00Z"
        var records = Fixture.vectorRecords
        for i in 0..<60_000 {
            records.append(["type": "card", "card_number": String(format: "33078291%08d", i), "person_ref": String(repeating: "a", count: 32), "status": "active"])
        }
        let big = try Fixture.snapshot(header: header, records: records)   // in a folder with room, not on the small disk
        do {
            _ = try store.installSnapshot(at: big, trustedAuthorities: Fixture.authorities, now: Fixture.now)
            Issue.record("60,000 cards fitted on a 2 MB disk")
        } catch let r as SnapshotRefusal {
            guard case .storage = r else { Issue.record("not a storage refusal: \(r)"); return }
        }
        #expect(try store.installedSnapshot()?.header.snapshotID == "330782-20261122-01")
        #expect(try store.view(cardNumber: "3307820000000017", period: "2026")?.card?.status == .active)
        #expect(try FileManager.default.contentsOfDirectory(atPath: mountPoint.path).filter { $0.contains(".staging-") }.isEmpty)
    }
}
