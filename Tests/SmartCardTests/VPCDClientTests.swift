import Foundation
import TestVectors
import Testing
import VirtualCard
#if canImport(Glibc)
import Glibc
#endif

/// vpcd serves one card per port and leaves a second connection queued, silent. A fake vpcd
/// (a listening socket) shows that `insert` takes the reader only once vpcd speaks.
@Suite struct VPCDClientTests {
    /// A TCP listener on 127.0.0.1 and an ephemeral port.
    final class FakeVPCD: Sendable {
        let fd: Int32
        let port: UInt16
        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = 0
            inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
            port = UInt16(bigEndian: addr.sin_port)
            // Not closed here: every property is set, so deinit runs after the throw and closes it once.
            guard bound == 0, listen(fd, 4) == 0 else { throw POSIXError(.EADDRINUSE) }
        }
        deinit { if fd >= 0 { close(fd) } }
        func accept() -> Int32 { Glibc.accept(fd, nil, nil) }
    }

    @Test func aSilentReaderIsTakenAndInsertFailsLoudly() throws {
        let vpcd = try FakeVPCD()   // never accepts, never speaks: as vpcd with a card already connected
        let client = VPCDClient(emulator: Vectors.emulator("3307820000000017"), port: vpcd.port)
        do {
            try client.insert(timeout: 2, claimTimeout: 0.5)
            Issue.record("insert succeeded on a silent reader")
        } catch let e as VPCDError {
            // Gave up after the claim timeout (0.5 s), not the connect timeout: the error says
            // which wait ran out (not timed here: a loaded machine must not fail the test).
            guard case .readerBusy(_, let port, let waited) = e else { Issue.record("\(e)"); return }
            #expect(port == vpcd.port && "\(e)".contains("taken"))
            #expect(waited == 0.5)
        }
        #expect(!client.isInserted)
    }

    @Test func aReaderThatAsksForTheATRIsTaken() throws {
        let vpcd = try FakeVPCD()
        let server = Thread {
            let s = vpcd.accept()
            var ask: [UInt8] = [0x00, 0x01, 0x04]   // vpcd: "ATR?"
            _ = send(s, &ask, 3, 0)
            var reply = [UInt8](repeating: 0, count: 64)
            _ = recv(s, &reply, 64, 0)
            Thread.sleep(forTimeInterval: 0.2)
            close(s)
        }
        server.start()
        let client = VPCDClient(emulator: Vectors.emulator("3307820000000017"), port: vpcd.port)
        try client.insert(timeout: 2, claimTimeout: 2)
        #expect(client.waitUntilRemoved(timeout: 5))   // the fake vpcd closes: the card is out
    }
}
