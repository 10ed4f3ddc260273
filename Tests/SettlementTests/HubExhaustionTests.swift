import AsyncHTTPClient
import Crypto
import Foundation
import Glibc
import KioskCore
import TestVectors
import Testing
@testable import Settlement
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// A raw loopback connection, driven from a thread of its own (blocking calls off the pool).
final class RawConnection: Sendable {
    let fd: Int32
    init?(port: Int) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        // Not closed here: `fd` is set, so deinit runs even for a failed init and closes it.
        // Closing it here too closed it twice, and the second close could take a descriptor
        // NIO had just been given the same number for (its selector then asserted).
        guard r == 0 else { return nil }
    }
    deinit { if fd >= 0 { close(fd) } }

    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// What arrives within `seconds` (empty: the peer closed, or nothing came).
    func receive(seconds: Double) -> (bytes: [UInt8], closed: Bool) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { return (Array(buffer.prefix(n)), false) }
        // Closed: an orderly end (0), or a reset (a peer closing with bytes unread sends RST).
        return ([], n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
    }

    /// Whether the hub has closed the connection, looked at without waiting.
    var isClosed: Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Whether the hub closed the connection within `seconds` (reading and discarding any answer).
    func closedByPeer(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let r = receive(seconds: 0.2)
            if r.closed { return true }
        }
        return false
    }
}

/// Issue 21 item 3: an outsider cannot exhaust the hub. Deadlines per connection, a
/// connection cap with room kept for devices, and per-device limits (429).
@Suite struct HubExhaustionTests {
    static var fast: ConnectionLimits {
        var l = ConnectionLimits()
        l.headTimeout = .seconds(2)
        l.bodyTimeout = .seconds(2)
        l.maxAnonymous = 20
        l.maxConnections = 60
        return l
    }

    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await SenderBeforeBodyTests.onOwnThreadQuiet(body)
    }

    @Test("the default bounds: a request head within 30 s, a body within 30 s and a second per 64 KiB, 4,096 connections of which 1,024 anonymous")
    func defaults() {
        let l = ConnectionLimits()
        #expect(l.headTimeout == .seconds(30) && l.bodyTimeout == .seconds(30) && l.bodyRate == 64 * 1024)
        #expect(l.maxConnections == 4096 && l.maxAnonymous == 1024)
        #expect(HubLimits().batchesPerSecond == 10 && HubLimits().longPollsPerDevice == 2)
    }

    @Test("a slowloris (a header byte every half second) and a slow body are dropped at their deadline; a silent socket too")
    func slowClientsAreDropped() async throws {
        let hub = try await HubFixture.start(now: vectorHubClock, connectionLimits: Self.fast)
        defer { Task { await hub.stop() } }
        let port = hub.running.port
        let results = await Self.onThread { () -> [Bool] in
            guard let loris = RawConnection(port: port), let slowBody = RawConnection(port: port), let silent = RawConnection(port: port) else { return [] }
            loris.send("GET /v1/health HTTP/1.1\r\nHost: x\r\n")
            slowBody.send("POST /v1/devices/\(Fixtures.deviceID)/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nX-Signature: AAAA\r\n\r\n")
            var lorisClosed = false, bodyClosed = false
            let start = Date()
            // Generous: on PostgreSQL other suites' database calls can hold the hub's event
            // loops for seconds (the hand-written pool blocks; issue 21 item 5 replaces it).
            while Date().timeIntervalSince(start) < 90, !(lorisClosed && bodyClosed) {
                if !lorisClosed { lorisClosed = !loris.send("X") || loris.receive(seconds: 0.25).closed }
                if !bodyClosed { bodyClosed = !slowBody.send("{") || slowBody.receive(seconds: 0.25).closed }
            }
            let elapsed = Date().timeIntervalSince(start)
            // Dropped within seconds of their 2 s deadlines (generous: other suites load the machine).
            return [lorisClosed, bodyClosed, silent.closedByPeer(within: 30), elapsed < 90]
        }
        #expect(results == [true, true, true, true], "\(results)")
        #expect(try await hub.send([try HubCase.subsidy(seq: 1)]).map(\.reason) == [nil])
    }

    @Test("a flood of silent sockets past the anonymous cap: the oldest are closed, a genuine kiosk's batch over a new connection is answered, and a device's keep-alive connection keeps its place")
    func floodLeavesRoomForDevices() async throws {
        var limits = Self.fast
        limits.headTimeout = .seconds(60)   // the flood would otherwise time out by itself
        let hub = try await HubFixture.start(now: vectorHubClock, connectionLimits: limits)
        defer { Task { await hub.stop() } }
        let port = hub.running.port
        // A device's connection: one signed sync request answered, the connection kept open.
        let device = try SyncCase.kiosk(hub.url)
        try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
        let signed = await (try SyncCase.sync(device, now: vectorHubClock)).signedRequest("/v1/regions/330782/snapshots?wait=0", range: nil)
        let headers = signed.headers.map { "\($0.name): \($0.value)\r\n" }.joined()
        let request = "GET /v1/regions/330782/snapshots?wait=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)\r\n"
        let outcome = await Self.onThread { () -> (first: String, flood: Int, afterFlood: String, open: Int) in
            guard let kiosk = RawConnection(port: port) else { return ("", 0, "", 0) }
            kiosk.send(request)
            let first = String(decoding: kiosk.receive(seconds: 10).bytes, as: UTF8.self)
            var flood: [RawConnection] = []
            for _ in 0..<200 { if let c = RawConnection(port: port) { flood.append(c) } }
            // The hub accepts them in its own time (a loaded machine): counted once it has.
            var open = flood.count
            let deadline = Date().addingTimeInterval(20)
            while open > 20, Date() < deadline {
                Thread.sleep(forTimeInterval: 0.2)
                open = flood.filter { !$0.isClosed }.count
            }
            kiosk.send(request)
            let again = String(decoding: kiosk.receive(seconds: 10).bytes, as: UTF8.self)
            return (first, flood.count, again, open)
        }
        #expect(outcome.first.hasPrefix("HTTP/1.1 200"), "\(outcome.first.prefix(200))")
        #expect(outcome.flood == 200)
        // At most the anonymous cap of the flood is still open; the device's connection was not evicted.
        #expect(outcome.open <= limits.maxAnonymous, "\(outcome.open) flood sockets open")
        #expect(outcome.afterFlood.hasPrefix("HTTP/1.1 200"), "\(outcome.afterFlood.prefix(200))")
        // A new connection from a kiosk during a flood: answered within a second.
        let floodAgain = await Self.onThread { (0..<200).compactMap { _ in RawConnection(port: port) } }
        let started = ContinuousClock.now
        #expect(try await hub.send([try HubCase.subsidy(seq: 1)]).map(\.reason) == [nil])
        // Answered (the time is printed, not asserted: the figure is Benchmarks/hub-hostile.sh's).
        let took = ContinuousClock.now - started
        print("a genuine batch during a flood of 200 silent sockets (anonymous cap 20): \(took)")
        withExtendedLifetime(floodAgain) {}
        #expect(hub.hub.connections.counts.anonymous <= limits.maxAnonymous + 1)
    }

    @Test("a device's long poll keeps its connection through a flood (marked when its signature verifies, not when the answer leaves); one device keeps its place with at most perDevice connections")
    func longPollSurvivesFloodAndDeviceCap() async throws {
        var limits = Self.fast
        limits.headTimeout = .seconds(60)
        limits.perDevice = 2
        let hub = try await HubFixture.start(now: vectorHubClock, connectionLimits: limits)
        defer { Task { await hub.stop() } }
        let port = hub.running.port
        try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
        let sync = try SyncCase.sync(try SyncCase.kiosk(hub.url), now: vectorHubClock)
        func raw(_ path: String) async -> String {
            let signed = await sync.signedRequest(path, range: nil)
            return "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n" + signed.headers.map { "\($0.name): \($0.value)\r\n" }.joined() + "\r\n"
        }
        let poll = await raw("/v1/regions/330782/snapshots?installed=\(SyncCase.full)&wait=8")
        let quick = await raw("/v1/regions/330782/snapshots?wait=0")
        let registry = hub.hub.connections
        let outcome = await Self.onThread { () -> (poll: String, devices: Int, open: Int) in
            guard let waiting = RawConnection(port: port) else { return ("", -1, -1) }
            waiting.send(poll)
            Thread.sleep(forTimeInterval: 1)
            // 200 silent sockets over an anonymous cap of 20 while the poll is held.
            var flood: [RawConnection] = []
            for _ in 0..<200 { if let c = RawConnection(port: port) { flood.append(c) } }
            let answer = String(decoding: waiting.receive(seconds: 30).bytes, as: UTF8.self)
            flood.removeAll()
            // Four more connections of the same device, each answered: two keep their place.
            let four = (0..<4).compactMap { _ in RawConnection(port: port) }
            for c in four { c.send(quick); _ = c.receive(seconds: 10) }
            let counts = registry.counts
            withExtendedLifetime((waiting, four)) {}
            return (answer, counts.open - counts.anonymous, counts.open)
        }
        #expect(outcome.poll.hasPrefix("HTTP/1.1 304"), "\(outcome.poll.prefix(120))")
        // Five of the device's connections open (the poll's and four): two keep their place.
        #expect(outcome.open >= 5 && outcome.devices == 2, "\(outcome)")
    }

    @Test("at most 10 batch requests a second per device (429 with Retry-After beyond); requests naming the device with a bad signature spend none of its allowance")
    func batchRate() async throws {
        let hub = try await HubFixture.start(now: vectorHubClock)
        defer { Task { await hub.stop() } }
        let url = "\(hub.url)/v1/devices/\(Fixtures.deviceID)/batches"
        // An outsider naming the device, 50 times, badly signed.
        for _ in 0..<50 {
            let body = HubCase.batch([try HubCase.text(try HubCase.subsidy(seq: 1))], device: Fixtures.deviceID)
            #expect(try await post(url, body, signature: "AAAA").0 == 401)
        }
        // The device itself: its allowance is whole.
        // 20 at once (on PostgreSQL one by one would take longer than a second).
        let body = HubCase.batch([], device: Fixtures.deviceID)
        let signature = try HubCase.signature(body, by: Fixtures.deviceID)
        // The client opens at most 8 connections to a host, so the 20 arrive in waves; on a
        // loaded machine a wave can take long enough for tokens to come back. Up to 5 bursts,
        // each after the allowance has refilled, until one arrives within its second.
        var statuses: [Int] = []
        for attempt in 0..<5 where statuses.filter({ $0 == 429 }).count < 5 {
            if attempt > 0 { try await Task.sleep(for: .seconds(1.2)) }
            statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 { group.addTask { try await post(url, body, signature: signature).0 } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
        }
        #expect(statuses.filter { $0 == 200 }.count >= 10 && statuses.allSatisfy { $0 == 200 || $0 == 429 }, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count >= 5, "\(statuses)")
        // Spent: the next is refused with Retry-After (sent at once, before a token comes back).
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "X-Signature", value: signature)
        request.body = .bytes(body)
        // In bursts: one request at a time on a loaded machine (PostgreSQL pass) can take longer
        // than a token takes to come back.
        let burst = request
        var limited = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        for _ in 0..<10 where limited.status.code != 429 {
            limited = try await withThrowingTaskGroup(of: HTTPClientResponse.self) { group in
                for _ in 0..<20 { group.addTask { try await HTTPClient.shared.execute(burst, timeout: .seconds(10)) } }
                var found: HTTPClientResponse?
                for try await r in group where found == nil || r.status.code == 429 && found?.status.code != 429 { found = r }
                return found!
            }
        }
        #expect(limited.status.code == 429 && limited.headers["Retry-After"].first == "1")
        try await Task.sleep(for: .seconds(1.2))
        let later = HubCase.batch([], device: Fixtures.deviceID)
        let (status, _, text) = try await post(url, later, signature: try HubCase.signature(later, by: Fixtures.deviceID))
        #expect(status == 200, "\(text)")
    }

    @Test("a device's allowance on a clock of the test's own: 10 at once, the 11th waits 1 s; a token back every 0.1 s; devices apart")
    func batchBucket() {
        let limiter = DeviceLimiter()
        let t0 = ContinuousClock.now
        let first = (0..<11).map { _ in limiter.batch("A", perSecond: 10, now: t0) }
        #expect(first.prefix(10).allSatisfy { $0 == nil } && first[10] == 1)
        #expect(limiter.batch("B", perSecond: 10, now: t0) == nil)
        #expect(limiter.batch("A", perSecond: 10, now: t0 + .milliseconds(50)) == 1)
        #expect(limiter.batch("A", perSecond: 10, now: t0 + .milliseconds(110)) == nil)
        #expect(limiter.batch("A", perSecond: 10, now: t0 + .milliseconds(120)) == 1)
    }

    @Test("a Content-Length no body could have (7e14 bytes) does not bring the hub down; the next request is answered")
    func absurdLengthIsHarmless() async throws {
        let hub = try await HubFixture.start(now: vectorHubClock)
        defer { Task { await hub.stop() } }
        let port = hub.running.port
        let answer = await Self.onThread { () -> String in
            guard let c = RawConnection(port: port) else { return "" }
            c.send("POST /v1/regions/330782/roster-changes HTTP/1.1\r\nHost: x\r\nContent-Length: 700000000000000\r\n\r\n")
            return String(decoding: c.receive(seconds: 10).bytes, as: UTF8.self)
        }
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(100))")
        #expect(try await hub.send([try HubCase.subsidy(seq: 1)]).map(\.reason) == [nil])
    }

    @Test("a kiosk re-sending a conflicting record again and again: every refusal is logged, its body stored once by digest")
    func conflictingBodiesOnce() async throws {
        try await withHub(now: vectorHubClock) { hub in
            let first = try HubCase.subsidy(seq: 1)
            #expect(try await hub.send([first]).map(\.reason) == [nil])
            var changed = first
            changed["snapshot_id"] = "330782-20261123-01"
            for _ in 0..<30 {
                #expect(try await hub.send([changed]).map(\.reason) == ["conflict"])
                try await Task.sleep(for: .milliseconds(110))   // within the device's 10 batches a second
            }
            let rejections = try hub.hub.database.rejections()
            let body = try HubCase.text(changed)
            #expect(rejections.count == 30 && Set(rejections.map(\.body)) == [body])
            let stored = try hub.hub.database.engine.read { c in
                (try c.int("SELECT COUNT(*) FROM hub_rejected_body") ?? -1, try c.int("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM hub_rejection") ?? -1)
            }
            #expect(stored.0 == 1 && stored.1 == 0, "\(stored)")
        }
    }

    @Test("at most 2 long polls held at once per device; the third gets 429")
    func longPollsPerDevice() async throws {
        try await withHub(now: vectorHubClock) { hub in
            try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            let device = try SyncCase.kiosk(hub.url)
            let sync = try SyncCase.sync(device, now: vectorHubClock)
            let path = "/v1/regions/330782/snapshots?installed=\(SyncCase.full)&wait=10"
            // Three at once (10 s each, so they overlap however loaded the machine): two are held, one refused.
            var requests: [HTTPClientRequest] = []
            for _ in 0..<3 { requests.append(await sync.signedRequest(path, range: nil)) }
            let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
                for r in requests { group.addTask { try await HTTPClient.shared.execute(r, timeout: .seconds(60)).status.code } }
                return try await group.reduce(into: [UInt]()) { $0.append($1) }
            }
            #expect(statuses.sorted() == [304, 304, 429], "\(statuses)")
            // Both ended: a long poll is allowed again.
            let fourth = try await HTTPClient.shared.execute(await sync.signedRequest(path.replacingOccurrences(of: "wait=10", with: "wait=1"), range: nil),
                                                             timeout: .seconds(30))
            #expect(fourth.status.code == 304)
        }
    }
}
