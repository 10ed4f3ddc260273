import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on loopback in front of the hub that drops the link once it has passed
/// `cutAfter` bytes from the hub to the client, for the first `cuts` times (each cut ends
/// that connection). Every other byte passes unchanged. One thread per direction.
final class CuttingProxy: Sendable {
    let port: UInt16
    private let listener: Int32
    /// Where new connections go (a load balancer's failover: `retarget`).
    private let target: Atomic<UInt16>
    private let cutAfter: Int
    private let cutsLeft: Mutex<Int>
    /// Connections cut so far.
    let cutCount = Atomic<Int>(0)
    /// Bytes passed from the hub to the client, per finished connection, in the order they ended.
    let forwarded = Mutex<[Int]>([])

    init(to target: UInt16, cutAfter: Int, cuts: Int = 1) throws {
        self.target = Atomic(target)
        self.cutAfter = cutAfter
        cutsLeft = Mutex(cuts)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard fd >= 0, bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        Thread { [self] in acceptLoop() }.start()
    }

    /// New connections go to `port` from now on.
    func retarget(_ port: UInt16) { target.store(port, ordering: .releasing) }

    func close() { shutdown(listener, Int32(SHUT_RDWR)); Glibc.close(listener) }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = target.load(ordering: .acquiring).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { Glibc.close(client); Glibc.close(upstream); continue }
            let cut = cutsLeft.withLock { left -> Bool in
                guard left > 0 else { return false }
                left -= 1
                return true
            }
            Thread { [self] in pump(from: client, to: upstream, limit: nil, counted: false) }.start()
            Thread { [self] in pump(from: upstream, to: client, limit: cut ? cutAfter : nil, counted: true) }.start()
        }
    }

    /// Copies until either side closes, or `limit` bytes passed: then both sockets are shut.
    private func pump(from source: Int32, to sink: Int32, limit: Int?, counted: Bool) {
        var buffer = [UInt8](repeating: 0, count: 1024)
        var passed = 0
        while true {
            let want = limit.map { min(buffer.count, $0 - passed) } ?? buffer.count
            if want <= 0 {
                cutCount.wrappingAdd(1, ordering: .relaxed)
                break
            }
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, want) }
            guard n > 0 else { break }
            var sent = 0
            while sent < n {
                let w = buffer.withUnsafeBytes { write(sink, $0.baseAddress! + sent, n - sent) }
                guard w > 0 else { break }
                sent += w
            }
            passed += n
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(sink, Int32(SHUT_RDWR))
        if counted { forwarded.withLock { $0.append(passed) } }
    }
}
