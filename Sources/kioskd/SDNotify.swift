import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: datagrams to `$NOTIFY_SOCKET` (READY=1, WATCHDOG=1,
/// STOPPING=1, STATUS=…). Does nothing when not started by systemd.
enum SDNotify {
    static func send(_ message: String) {
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
    static var watchdogInterval: Duration? {
        guard let s = ProcessInfo.processInfo.environment["WATCHDOG_USEC"], let usec = Int64(s), usec > 0 else { return nil }
        return .microseconds(usec)
    }
}

/// Pings the systemd watchdog while the daemon is really alive: every quarter of the
/// interval it runs every liveness check (each bounded in time), and pings only when all of
/// them answered. A daemon whose store, card worker or event loop is stuck stops pinging,
/// and systemd restarts it after `WatchdogSec`.
struct WatchdogService: Service {
    let interval: Duration
    let checks: [LivenessCheck]
    let logger: Logger

    func run() async throws {
        let period = interval / 4
        try await cancelWhenGracefulShutdown {
            var failing: [String] = []
            while !Task.isCancelled {
                let failed = await Liveness.failing(checks, within: period)
                if failed.isEmpty {
                    SDNotify.send("WATCHDOG=1")
                    if !failing.isEmpty {
                        logger.notice("alive again: feeding the watchdog")
                        SDNotify.send("STATUS=serving on 127.0.0.1")
                    }
                } else {
                    logger.error("not alive: not feeding the watchdog", metadata: ["failing": "\(failed.joined(separator: ", "))"])
                    SDNotify.send("STATUS=not alive: \(failed.joined(separator: ", "))")
                }
                failing = failed
                try await Task.sleep(for: period)
            }
        }
    }
}

/// RLIMIT_NOFILE: the soft limit raised towards `wanted`, never past the hard limit.
enum FileLimit {
    static func raise(to wanted: UInt64) -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        let target = min(UInt64(limit.rlim_max), wanted)
        if UInt64(limit.rlim_cur) < target {
            limit.rlim_cur = rlim_t(target)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return UInt64(limit.rlim_cur)
    }
}
