import Foundation
import TestVectors
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 23 item 4: `settlement-hub serve` under systemd (`Type=notify`, `WatchdogSec`),
/// through a fake `NOTIFY_SOCKET` (these machines have no systemd as PID 1).
@Suite struct HubNotifyTests {
    @Test("READY=1 once listening, WATCHDOG=1 while alive, STOPPING=1 at SIGTERM")
    func notifiesSystemd() async throws {
        let dir = temporaryFolder("hub-notify")
        let socketPath = dir.appendingPathComponent("notify.sock").path
        let notify = try #require(NotifySocket.bind(path: socketPath))
        defer { close(notify) }
        let store = try testHubStore("hub-notify")
        let child = try KillTests.Child.spawn(try KillTests.product("settlement-hub"),
                                              ["serve", "--port", "0", "--log-level", "error", "--snapshot", Fixtures.url("snapshot-small.jsonl").path]
                                              + store.arguments, in: dir,
                                              environment: ["NOTIFY_SOCKET": socketPath, "WATCHDOG_USEC": "2000000"])
        defer { kill(child.pid, SIGKILL) }
        let first = NotifySocket.datagrams(notify, within: 20) { got in
            got.contains { $0.hasPrefix("READY=1") } && got.filter { $0 == "WATCHDOG=1" }.count >= 2
        }
        #expect(first.contains { $0.hasPrefix("READY=1") }, "\(first) / \(child.errors)")
        #expect(first.filter { $0 == "WATCHDOG=1" }.count >= 2, "\(first)")
        #expect(kill(child.pid, SIGTERM) == 0)
        let last = NotifySocket.datagrams(notify, within: 20) { $0.contains("STOPPING=1") }
        #expect(last.contains("STOPPING=1"), "\(last)")
        let status = await child.wait()
        #expect(status == 0, "exit \(String(describing: status)): \(child.errors.suffix(500))")
    }
}
