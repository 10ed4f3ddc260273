import Foundation
import Logging
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: datagrams to `$NOTIFY_SOCKET` (READY=1, WATCHDOG=1,
/// STOPPING=1, STATUS=…). Does nothing when not started by systemd.
public enum SDNotify {
    /// Sends `message` to systemd; nothing when not started by systemd.
    public static func send(_ message: String) {
        guard var path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        if path.hasPrefix("@") { path = "\0" + path.dropFirst() }   // abstract socket
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in raw.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (path.hasPrefix("\0") ? 0 : 1))
        _ = message.withCString { msg in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, msg, strlen(msg), 0, $0, length) }
            }
        }
    }

    /// The watchdog interval systemd asks for (`WatchdogSec=`), if any.
    public static var watchdogInterval: Duration? {
        guard let s = ProcessInfo.processInfo.environment["WATCHDOG_USEC"], let usec = Int64(s), usec > 0 else { return nil }
        return .microseconds(usec)
    }
}

/// Pings the systemd watchdog while the daemon is really alive: every quarter of the
/// interval it runs every liveness check (each bounded in time), and pings only when all of
/// them answered. A daemon whose store, card worker or event loop is stuck stops pinging,
/// and systemd restarts it after `WatchdogSec`.
public struct WatchdogService: Service {
    let interval: Duration
    let checks: [LivenessCheck]
    let logger: Logger
    let status: String

    /// Pings every quarter of `interval` while every check answers; `status` is said when alive again.
    public init(interval: Duration, checks: [LivenessCheck], logger: Logger, status: String) {
        self.interval = interval; self.checks = checks; self.logger = logger; self.status = status
    }

    /// Runs until graceful shutdown.
    public func run() async throws {
        let period = interval / 4
        try await cancelWhenGracefulShutdown {
            var failing: [String] = []
            while !Task.isCancelled {
                let failed = await Liveness.failing(checks, within: period)
                if failed.isEmpty {
                    SDNotify.send("WATCHDOG=1")
                    if !failing.isEmpty {
                        logger.notice("alive again: feeding the watchdog")
                        SDNotify.send("STATUS=\(status)")
                    }
                } else {
                    logger.error("not alive: not feeding the watchdog", metadata: ["failing": "\(failed.joined(separator: ", "))"])
                    SDNotify.send("STATUS=not alive: \(failed.joined(separator: ", "))")
                }
                failing = failed
                // Cancelled at graceful shutdown: the loop ends, the service returns without an error.
                try? await Task.sleep(for: period)
            }
        }
    }
}

/// One thing the daemon needs to be alive (issue 8 item 4): it calls `done(true)` when it
/// answered correctly. It may never call it (a stuck queue, a blocked read): the caller's
/// deadline decides.
public struct LivenessCheck: Sendable {
    /// What is checked, as the log and `STATUS=` name it.
    public let name: String
    /// Starts the check; it calls `done` with the answer (or never: the deadline decides).
    public let start: @Sendable (_ done: @escaping @Sendable (Bool) -> Void) -> Void
    /// A check named `name`.
    public init(name: String, start: @escaping @Sendable (_ done: @escaping @Sendable (Bool) -> Void) -> Void) {
        self.name = name; self.start = start
    }
}

/// Liveness checks run together, each bounded in time (kioskd and the hub add their own checks).
public enum Liveness {
    /// The names of the checks that did not answer `true` within `bound`.
    public static func failing(_ checks: [LivenessCheck], within bound: Duration) async -> [String] {
        await withTaskGroup(of: (String, Bool).self) { group in
            for check in checks { group.addTask { (check.name, await answers(check, within: bound)) } }
            var failed: [String] = []
            for await (name, ok) in group where !ok { failed.append(name) }
            return failed.sorted()
        }
    }

    /// Whether `check` answered `true` within `bound`. Returns at the deadline at the latest,
    /// even when the check never answers (its callback is then ignored).
    public static func answers(_ check: LivenessCheck, within bound: Duration) async -> Bool {
        let once = Once()
        return await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let (seconds, attoseconds) = bound.components
            let deadline = DispatchTime.now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
            DispatchQueue.global().asyncAfter(deadline: deadline) { if once.claim() { c.resume(returning: false) } }
            check.start { ok in if once.claim() { c.resume(returning: ok) } }
        }
    }

    /// The first bytes (at most 12: an HTTP status line's `HTTP/1.1 NNN`) a server on `host`
    /// and `port` answers to `GET path`, each step bounded by `timeout`; nil when it cannot be
    /// reached or says nothing. A liveness check of an event loop that must accept, read and
    /// write (kioskd's `/livez`, the hub's port).
    public static func selfRequest(host: String = "127.0.0.1", port: Int, path: String, timeout: Duration) -> [UInt8]? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let (s, atto) = timeout.components
        var tv = timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { return nil }
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 12)
        var got = 0
        while got < buffer.count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, $0.count - got, 0) }
            guard n > 0 else { break }
            got += n
        }
        return got > 0 ? Array(buffer.prefix(got)) : nil
    }
}

/// Resolves a race exactly once (the answer or the deadline).
private final class Once: Sendable {
    private let claimed = Atomic<Bool>(false)
    func claim() -> Bool {
        claimed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}
