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

/// Pings the systemd watchdog at half its interval while the daemon is healthy.
struct WatchdogService: Service {
    let interval: Duration
    let healthy: @Sendable () async -> Bool
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if await healthy() { SDNotify.send("WATCHDOG=1") } else { logger.error("unhealthy: not feeding the watchdog") }
                try await Task.sleep(for: interval / 2)
            }
        }
    }
}
