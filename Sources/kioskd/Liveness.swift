import Foundation
import Synchronization
import KioskCore
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

extension Liveness {
    /// The store answers a read (its installed snapshot's header; none installed is fine).
    static func store(_ device: Device) -> LivenessCheck {
        LivenessCheck(name: "store") { done in
            DispatchQueue.global().async {
                do {
                    // Issue 23 item 5: the store's file replaced, removed or overwritten starves the watchdog.
                    guard device.store.fileProblem() == nil else { done(false); return }
                    _ = try device.store.installedSnapshot(); done(true)
                } catch { done(false) }
            }
        }
    }

    /// The card worker's queue runs a no-op: no session is stuck in PC/SC.
    static func cardWorker(_ engine: Engine) -> LivenessCheck {
        LivenessCheck(name: "card_worker") { done in engine.probe { done(true) } }
    }

    /// The HTTP server answers `GET /livez` on loopback: the event loop accepts, reads and
    /// writes (and the daemon still has descriptors to accept with).
    static func http(port: Int, timeout: Duration) -> LivenessCheck {
        LivenessCheck(name: "http") { done in
            DispatchQueue.global().async { done(selfRequest(port: port, timeout: timeout)) }
        }
    }

    static func selfRequest(port: Int, timeout: Duration) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let (s, atto) = timeout.components
        var tv = timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        let request = Array("GET /livez HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        var got = 0
        while got < 12 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, $0.count - got, 0) }
            guard n > 0 else { return false }
            got += n
        }
        return String(decoding: buffer.prefix(12), as: UTF8.self) == "HTTP/1.1 200"
    }
}
