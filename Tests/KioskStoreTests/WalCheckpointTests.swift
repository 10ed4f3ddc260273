import Foundation
import GRDB
import KioskCore
@testable import KioskStore
import Testing

/// Issue 24 item 4: the WAL's checkpoint done when nobody waits, SQLite's own kept as the
/// bound. What a checkpoint copies must be in the database file itself: the WAL file left
/// out, a copy of the file alone holds it.
@Suite struct WalCheckpointTests {
    /// Records in a copy of the store's database file alone (its WAL left behind).
    static func recordsInTheFileAlone(_ store: KioskStore) throws -> Int {
        let copy = Fixture.tempDir().appendingPathComponent("alone.sqlite").path
        try FileManager.default.copyItem(atPath: store.path, toPath: copy)
        let q = try DatabaseQueue(path: copy)
        defer { try? q.close() }
        return try q.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM record") ?? -1 }
    }

    @Test func aCheckpointWhenIdleCopiesTheWALIntoTheFileOnlyOnceItIsDue() throws {
        let d = try Fixture.device()
        let store = d.store
        _ = try store.checkpointWhenIdle(minimumPages: 1)
        #expect(store.walPages == 0)
        for i in 0..<10 { _ = try store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "\(i)", now: Fixture.now) }
        let pages = store.walPages
        #expect(pages > 10 && pages < KioskStore.idlePages, "\(pages)")
        #expect(try Self.recordsInTheFileAlone(store) == 0)
        // Not due yet: nothing done.
        #expect(try store.checkpointWhenIdle() == nil)
        #expect(store.walPages == pages)
        // Due: every page copied, and the file alone holds the records.
        #expect(try store.checkpointWhenIdle(minimumPages: pages) == pages)
        #expect(store.walPages == 0)
        #expect(try Self.recordsInTheFileAlone(store) == 10)
        // The store goes on as before: the next write starts the WAL again.
        _ = try store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "after", now: Fixture.now)
        #expect(store.walPages > 0 && store.walPages < pages)
        #expect(try store.records().count == 11)
    }

    /// The store's WAL hook replaces SQLite's automatic checkpoint: it must still happen, or
    /// a kiosk whose patients never take their cards would grow its WAL without end.
    @Test func sqlitesOwnCheckpointStillBoundsTheWAL() throws {
        let d = try Fixture.device()
        let store = d.store
        var most = 0, written = 0
        while written < 600 {
            _ = try store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: String(repeating: "x", count: 3000), now: Fixture.now)
            written += 1
            most = max(most, store.walPages)
        }
        #expect(most >= Int(WalWatch.automaticPages) - 10, "\(most)")   // it went there
        #expect(most < Int(WalWatch.automaticPages) + 20, "\(most)")     // and no further
        #expect(try Self.recordsInTheFileAlone(store) > 300)
    }

    /// A reader in the middle of a read: the checkpoint copies what it may and never waits
    /// for it; what is left is counted and copied by a later one.
    @Test func aReaderInTheWayIsNotWaitedFor() throws {
        let d = try Fixture.device()
        let store = d.store
        _ = try store.checkpointWhenIdle(minimumPages: 1)
        _ = try store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "before", now: Fixture.now)
        let holding = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        // On a thread of its own: a reader blocked in a read must not hold one of the few
        // threads Swift concurrency runs every test on.
        Thread.detachNewThread {
            _ = try? store.pool.read { db in
                _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM record")
                holding.signal()
                _ = release.wait(timeout: .now() + 30)   // a checkpoint that waited for this read would be let go here
            }
            done.signal()
        }
        holding.wait()
        for i in 0..<5 { _ = try store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "\(i)", now: Fixture.now) }
        let started = Date()
        _ = try store.checkpointWhenIdle(minimumPages: 1)
        #expect(Date().timeIntervalSince(started) < 20, "the checkpoint waited for the reader")
        #expect(store.walPages > 0)
        release.signal()
        done.wait()
        _ = try store.checkpointWhenIdle(minimumPages: 1)
        #expect(store.walPages == 0)
        #expect(try Self.recordsInTheFileAlone(store) == 6)
    }
}
