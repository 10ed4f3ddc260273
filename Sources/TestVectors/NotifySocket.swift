import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd's side of sd_notify(3) for tests: a datagram socket a program under test sends
/// READY=1, WATCHDOG=1 and STOPPING=1 to (`NOTIFY_SOCKET`); these machines have no systemd
/// as PID 1.
public enum NotifySocket {
    /// A bound AF_UNIX datagram socket (sd_notify's receiving end).
    public static func bind(path: String) -> Int32? {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else { close(fd); return nil }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Every datagram received during `seconds`.
    public static func datagrams(_ fd: Int32, for seconds: Double) -> [String] {
        datagrams(fd, within: seconds) { _ in false }
    }

    /// Waits, up to `seconds`, for a stretch of `stretch` seconds in which no datagram is
    /// `message`: whether one came, and every datagram received meanwhile. A program that
    /// keeps sending `message` never gives one; a loaded machine is waited for.
    public static func quiet(_ fd: Int32, from message: String, for stretch: Double, within seconds: Double) -> (quiet: Bool, received: [String]) {
        let end = Date().addingTimeInterval(seconds)
        var received: [String] = []
        while Date() < end {
            let got = datagrams(fd, for: stretch)
            received += got
            if !got.contains(message) { return (true, received) }
        }
        return (false, received)
    }

    /// The datagrams received until `enough` holds (asked after each datagram, and every
    /// 200 ms when none comes), or `seconds` have passed: a test waits for what it expects, as
    /// long as a loaded machine needs, and no longer.
    public static func datagrams(_ fd: Int32, within seconds: Double, until enough: ([String]) -> Bool) -> [String] {
        let end = Date().addingTimeInterval(seconds)
        var out: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < end {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { out.append(String(decoding: buffer.prefix(n), as: UTF8.self)) }
            if enough(out) { break }
        }
        return out
    }
}
