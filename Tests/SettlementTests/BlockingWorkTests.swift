import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOPosix
import Testing
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// Issue 21 item 5: no blocking database call on an event loop or a request's task, and the
/// PostgreSQL pool is postgres-nio's `PostgresClient`. Both engines (PostgreSQL when
/// `BK_TEST_POSTGRES` is set).
@Suite struct BlockingWorkTests {
    @Test("a blocking database call on a request's task or on an event loop is refused; offloaded, the same call runs")
    func refusedWhereItWouldStall() async throws {
        let db = try testHubDatabase("blocking")
        defer { db.close() }
        #expect(try await BlockingWork.offload { try db.recordCount() } == 0)
        let offloaded = try await BlockingWork.$onRequestTask.withValue(true) { () async throws -> Int in
            #expect(throws: BlockingWork.Refused.self) { try db.recordCount() }
            #expect(throws: BlockingWork.Refused.self) { try db.engine.write { _ in } }
            // Offloaded: the blocking threads carry no task-locals.
            return try await BlockingWork.offload { try db.recordCount() }
        }
        #expect(offloaded == 0)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let onLoop = try await loop.submit { () -> String in
            do { _ = try db.recordCount(); return "ran" } catch { return "\(type(of: error))" }
        }.get()
        #expect(onLoop == "Refused")
    }

    @Test("the hub's router marks every request's task: a route that reads the database itself answers 500, the hub's own routes offload and answer")
    func routerMarksRequests() async throws {
        let db = try testHubDatabase("blocking-router")
        defer { db.close() }
        let hub = SettlementHub(database: db, roster: try snapshotRoster(), now: { Date() }, logger: quietLogger)
        let router = hub.makeRouter()
        router.get("/test/inline") { _, _ -> Response in
            do { _ = try db.recordCount(); return Response(status: .ok) } catch { return Response(status: .internalServerError) }
        }
        let (ports, found) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { found.yield($0.localAddress?.port ?? 0); found.finish() }, logger: quietLogger)
        let server = Task { try await app.run() }
        defer { server.cancel() }
        var port = 0
        for await p in ports { port = p }
        let inline = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/test/inline"), timeout: .seconds(10))
        #expect(inline.status.code == 500)
        let health = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/health"), timeout: .seconds(10))
        #expect(health.status.code == 200)
        let body = String(buffer: try await health.body.collect(upTo: 4096))
        #expect(body.contains(#""status":"ok""#), "\(body)")
    }

    @Test("PostgreSQL: a pooled connection the server ends while idle is replaced (a transaction on it fails at most once, the next runs); 40 transactions at once all finish on the bounded pool (12 connections)",
          .enabled(if: testPostgresURL != nil))
    func poolSurvivesAndBounds() async throws {
        let db = try testHubDatabase("pool")
        defer { db.close() }
        let admin = try testHubDatabase("pool-admin")
        defer { admin.close() }
        // Blocking calls off the cooperative pool (a stuck one must not starve every test).
        let outcome = try await BlockingWork.offload { () -> (pid: Int64, terminated: Bool, failures: Int, after: Int64?) in
            // The pool's one idle connection: its server process, ended from another session
            // (as a restart or an administrator would).
            let pid = try db.engine.read { c in try c.int("SELECT pg_backend_pid()") ?? 0 }
            let terminated = try admin.engine.write { c in try c.int("SELECT pg_terminate_backend(?::int)::int", pid) } == 1
            Thread.sleep(forTimeInterval: 0.5)
            var failures = 0
            var after: Int64?
            for _ in 0..<3 where after == nil {
                do { after = try db.engine.read { c in try c.int("SELECT 41 + 1") } } catch { failures += 1 }
            }
            return (pid, terminated, failures, after)
        }
        #expect(outcome.terminated && outcome.pid > 0)
        #expect(outcome.after == 42 && outcome.failures <= 1, "\(outcome)")
        // More callers than connections: they wait their turn, none fails.
        let sums = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<40 {
                group.addTask { try await BlockingWork.offload { try db.engine.read { c in try c.int("SELECT \(i)::bigint AS v FROM pg_sleep(0.05)") ?? -1 } } }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(sums.sorted() == (0..<40).map(Int64.init))
    }

    @Test("the publication lease released twice (by its owner, then as it goes) returns at once and is no longer held; another process's store then takes the lock (both engines; a second unlock sent on a closing PostgreSQL connection once waited for good)")
    func leaseReleasedTwice() async throws {
        let store = try testHubStore("lease")
        let first = try store.open(), second = try store.open()
        defer { first.close(); second.close() }
        let outcome = try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                try await BlockingWork.offload { () -> String in
                    var lease = try first.engine.tryPublicationLease()
                    guard let held = lease else { return "not taken" }
                    held.release()
                    let stillHeld = held.isHeld()
                    held.release()
                    lease = nil   // and once more as it goes
                    let other = try second.engine.tryPublicationLease()
                    other?.release()
                    return "released held=\(stillHeld) other=\(other != nil)"
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                return "hung"
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        #expect(outcome == "released held=false other=true")
    }

    /// CI once found the lock still held after its release: another test was spawning a
    /// process at that moment, and the child held a copy of the descriptor until its exec.
    @Test("a released SQLite publication lease is free at once, even while another process still holds a copy of its descriptor")
    func leaseReleasedWhileCopied() throws {
        let path = temporaryFolder("lease-copy").appendingPathComponent("hub.sqlite.publisher.lock").path
        let lease = try #require(try FileLease.take(path))
        #expect(try FileLease.take(path) == nil)   // held: another open file is refused
        // A child holding a copy of the locked descriptor, as one being spawned does until its exec.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["20"]
        let copy = FileHandle(fileDescriptor: fcntl(lease.fd, F_DUPFD_CLOEXEC, 0), closeOnDealloc: true)
        child.standardInput = copy
        try child.run()
        defer { kill(child.processIdentifier, SIGKILL); child.waitUntilExit() }
        try copy.close()
        lease.release()
        let next = try FileLease.take(path)
        #expect(next != nil, "the lock stayed held while the child lived")
        next?.release()
    }

    @Test("a roster the hub cannot read answers 503 database_error (retry), never unknown_device or a card refused for good; once readable, the same batch is accepted (both engines)")
    func unreadableRosterIsRetried() async throws {
        let hub = try await HubFixture.start(now: vectorHubClock)
        defer { Task { await hub.stop() } }
        let url = "\(hub.url)/v1/devices/\(Fixtures.deviceID)/batches"
        // The device looked up (and cached) while the roster reads.
        #expect(try await hub.send([HubCase.alert(seq: 1)]).map(\.reason) == [nil])
        let engine = hub.hub.database.engine
        try engine.write { try $0.execute("ALTER TABLE roster_entry RENAME TO roster_entry_away", arguments: []) }
        // A subsidy: its card cannot be looked up.
        let body = HubCase.batch([try HubCase.text(try HubCase.subsidy(seq: 2))])
        let signature = try HubCase.signature(body)
        let (status, answer, text) = try await post(url, body, signature: signature)
        #expect(status == 503 && answer?["error"] as? String == "database_error", "\(text)")
        // A device not looked up yet: 503 too, not 403 unknown_device.
        let other = "KSK-TEST-0002"
        let otherBody = HubCase.batch([try HubCase.text(HubCase.alert(seq: 1, device: other))], device: other)
        let (otherStatus, _, otherText) = try await post("\(hub.url)/v1/devices/\(other)/batches", otherBody,
                                                         signature: try HubCase.signature(otherBody, by: other))
        #expect(otherStatus == 503, "\(otherText)")
        try engine.write { try $0.execute("ALTER TABLE roster_entry_away RENAME TO roster_entry", arguments: []) }
        // Readable again: the same batch is accepted (nothing was answered for it before).
        let (again, againAnswer, againText) = try await post(url, body, signature: signature)
        let results = againAnswer?["results"] as? [[String: Any]]
        #expect(again == 200 && results?.first?["status"] as? String == "accepted", "\(againText)")
    }

    @Test("the unlucky kiosk: its hub cannot read the roster for a while; the kiosk's real uploader keeps every record, raises no hub_refused_device alert for a technician to chase, and waits the hub's 30 s, not the refused device's minutes; once readable, the queue drains (both engines)")
    func kioskRidesOutUnreadableRoster() async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            let queued = try queueAlerts(device, 3)
            let engine = hub.hub.database.engine
            try engine.write { try $0.execute("ALTER TABLE roster_entry RENAME TO roster_entry_away", arguments: []) }
            let uploader = try makeUploader(device)
            let failed = await uploader.drainOnce()
            guard case .retry(let after, _) = failed.outcome else {
                Issue.record("expected a retry, got \(failed.outcome)")
                return
            }
            #expect(after <= .seconds(60), "\(after)")
            #expect(failed.accepted == 0 && failed.rejected.isEmpty)
            let alerts = try device.store.records().filter { $0.body.contains("hub_refused_device") }
            #expect(alerts.isEmpty, "\(alerts.map(\.body))")
            #expect(try device.store.records(status: .queued).count == queued.count)
            try engine.write { try $0.execute("ALTER TABLE roster_entry_away RENAME TO roster_entry", arguments: []) }
            let drained = await uploader.drainOnce()
            #expect(drained.outcome == .drained && drained.accepted == queued.count, "\(drained)")
        }
    }
}
