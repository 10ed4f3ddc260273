import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 23 item 4: `settlement-hub serve` under systemd (`Type=notify`, `WatchdogSec`),
/// through a fake `NOTIFY_SOCKET` (these machines have no systemd as PID 1).
@Suite struct HubNotifyTests {
    /// A bound AF_UNIX datagram socket: sd_notify's receiving end.
    static func datagramSocket(path: String) -> Int32? {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else { close(fd); return nil }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// The datagrams received within `seconds`.
    static func datagrams(_ fd: Int32, for seconds: Double) -> [String] {
        var out: [String] = []
        let end = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 512)
        while Date() < end {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { out.append(String(decoding: buffer.prefix(n), as: UTF8.self)) }
        }
        return out
    }

    @Test("READY=1 once listening, WATCHDOG=1 while alive, STOPPING=1 at SIGTERM")
    func notifiesSystemd() async throws {
        let dir = temporaryFolder("hub-notify")
        let socketPath = dir.appendingPathComponent("notify.sock").path
        let notify = try #require(Self.datagramSocket(path: socketPath))
        defer { close(notify) }
        let store = try testHubStore("hub-notify")
        let child = try KillTests.Child.spawn(try KillTests.product("settlement-hub"),
                                              ["serve", "--port", "0", "--log-level", "error", "--snapshot", Fixtures.url("snapshot-small.jsonl").path]
                                              + store.arguments, in: dir,
                                              environment: ["NOTIFY_SOCKET": socketPath, "WATCHDOG_USEC": "2000000"])
        defer { kill(child.pid, SIGKILL) }
        let first = Self.datagrams(notify, for: 4)
        #expect(first.contains { $0.hasPrefix("READY=1") }, "\(first) / \(child.errors)")
        #expect(first.filter { $0 == "WATCHDOG=1" }.count >= 2, "\(first)")
        #expect(kill(child.pid, SIGTERM) == 0)
        let last = Self.datagrams(notify, for: 2)
        #expect(last.contains("STOPPING=1"), "\(last)")
        let status = await child.wait()
        #expect(status == 0, "exit \(String(describing: status)): \(child.errors.suffix(500))")
    }
}
