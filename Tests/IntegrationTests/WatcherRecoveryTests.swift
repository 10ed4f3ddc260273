import Foundation
import Synchronization
import SmartCard
import TestVectors
import Testing
import VirtualCard

/// Collects a watcher's events on a task of its own so tests can wait with a deadline.
final class EventRecorder: Sendable {
    private final class Log: Sendable { let events = Mutex<[ReaderEvent]>([]) }
    private let log = Log()
    private let task: Task<Void, Never>

    init(_ watcher: ReaderWatcher) {
        let log = self.log
        task = Task {
            for await e in watcher { log.events.withLock { $0.append(e) } }
        }
    }
    deinit { task.cancel() }
    func stop() { task.cancel() }

    var all: [ReaderEvent] { log.events.withLock { $0 } }

    /// Waits until `event` has been seen after index `from`; returns its index.
    func wait(for event: ReaderEvent, after from: Int = -1, timeout: Double = 10) async -> Int? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let e = all
            if let i = e.indices.first(where: { $0 > from && e[$0] == event }) { return i }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return nil
    }
}

/// A watcher's events one at a time, each waited for with a deadline: a watcher that goes
/// quiet fails the test waiting on it (`DeadlineExceeded`) instead of hanging the suite.
///
/// `@unchecked Sendable`, and why that is sound: the iterator is touched only by `next`, and a
/// test calls `next` from its one task, awaiting each call before the next. `withDeadline`
/// runs that call on a task of its own; when it returns with the event, that task is done;
/// when it throws at the deadline, the test ends with that error and never calls `next`
/// again (the abandoned call is cancelled and returns nil). So two calls never overlap.
final class WatcherEvents: @unchecked Sendable {
    private var iterator: AsyncStream<ReaderEvent>.Iterator
    init(_ watcher: ReaderWatcher) { iterator = watcher.makeAsyncIterator() }

    /// The next event, nil when the watcher ended; throws after `seconds` without one (the
    /// wait is cancelled then, which ends the watcher).
    func next(within seconds: Double = 10) async throws -> ReaderEvent? {
        try await withDeadline(seconds: seconds, "reader event") { await self.iterator.next() }
    }
}

extension PCSCIntegrationTests {
    /// pcscd killed (SIGKILL: a crash; pcscd with vpcd does not stop on SIGTERM while vpcd waits) and started again: the watcher says so and carries on, no restart of ours.
    /// The watcher keeps its default bound (10 minutes): pcscd's death itself ends the wait.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["BK_TEST_RESTART_PCSCD"] == "1"))
    func watcherRecoversWhenPcscdRestarts() async throws {
        let watcher = ReaderWatcher(filter: ReaderFilter(allowVirtual: true))
        #expect(watcher.blockingTimeoutMilliseconds >= 600_000)
        let recorder = EventRecorder(watcher)
        defer { recorder.stop() }
        #expect(await recorder.wait(for: .readerAdded(Harness.reader)) != nil)

        #expect(runToEnd("/usr/bin/pkill", ["-9", "-x", "pcscd"]) == 0)
        let lost = await recorder.wait(for: .serviceLost)
        #expect(lost != nil)
        #expect(recorder.all.contains(.readerRemoved(Harness.reader)))
        #expect(throws: PCSCError.noService) { try PCSCContext() }

        // Wait until the old pcscd is really gone, then start a new one.
        for _ in 0..<100 where runToEnd("/usr/bin/pgrep", ["-x", "pcscd", "-r", "R,S,D,I"]) == 0 { try await Task.sleep(nanoseconds: 50_000_000) }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Provisioning/start-pcscd.sh").path
        #expect(runToEnd("/bin/bash", [script]) == 0)

        let restored = await recorder.wait(for: .serviceRestored, after: lost ?? -1, timeout: 15)
        #expect(restored != nil)
        #expect(await recorder.wait(for: .readerAdded(Harness.reader), after: restored ?? -1) != nil)

        // And cards work again through the new pcscd.
        let client = VPCDClient(emulator: Vectors.emulator("3307820000000017"), port: Harness.port)
        try client.insert(timeout: 10)
        #expect(await recorder.wait(for: .cardInserted(reader: Harness.reader, atr: CardEmulator.atr), after: restored ?? -1) != nil)
        client.remove()
    }
}
