import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Puts a `CardEmulator` into a vpcd virtual reader: connects to vpcd's TCP port and
/// answers its messages (ENV.md: 2-byte big-endian length + payload both ways; one-byte
/// control messages 00 power off, 01 power on, 02 reset, 04 ATR). Connecting inserts
/// the card; closing the socket pulls it.
///
/// `@unchecked Sendable`, and why that is sound: the three `var`s (`fd`, `serving`,
/// `heldNanoseconds`) are read and written only with `lock` held (`insert`'s hand-over, `isInserted`, `remove`, `waitRemoved`,
/// and the serving thread's exit); the serving thread works on its own local copy of the
/// socket. Every other stored property is a `let` of a `Sendable` type.
public final class VPCDClient: @unchecked Sendable {
    /// vpcd's first reader's port.
    public static let defaultPort: UInt16 = 35963
    /// The card served.
    public let emulator: CardEmulator
    /// vpcd's host, an IPv4 address.
    public let host: String
    /// vpcd's port: one per virtual reader.
    public let port: UInt16
    /// A real card's timing (issue 24): each answer is held back until the modelled time
    /// has passed since its command arrived; nil answers at once.
    public let timing: CardTiming?
    private let logger: Logger
    private let lock = NSCondition()
    private var fd: Int32 = -1
    private var serving = false
    private var heldNanoseconds: UInt64 = 0

    /// The card's own time so far with `timing`: the seconds from each command's arrival to
    /// its answer (the emulator's work and the modelled delay), summed over every exchange.
    public var cardSeconds: Double { lock.withLock { Double(heldNanoseconds) / 1e9 } }

    /// A client for the card, not yet inserted (`insert`).
    public init(emulator: CardEmulator, host: String = "127.0.0.1", port: UInt16 = VPCDClient.defaultPort,
                timing: CardTiming? = nil, logger: Logger = Logger(label: "virtual-card")) {
        self.emulator = emulator
        self.timing = timing
        self.host = host
        self.port = port
        self.logger = logger
    }

    deinit { remove() }

    /// Whether the card is in the reader: connected and being served.
    public var isInserted: Bool { lock.withLock { serving } }

    /// Connects to vpcd (retrying for up to `timeout` seconds while vpcd is not listening
    /// yet) and serves the card on a thread of its own until `remove()` or a pull.
    ///
    /// vpcd serves one card per port: a second connection to a port that already has a card
    /// is accepted by the kernel but queued, and vpcd never talks to it (no power-on, no ATR
    /// request) until the first card leaves. So the reader counts as taken only once vpcd's
    /// first message (pcscd asks for the ATR within a fraction of a second) has arrived; with
    /// none within `claimTimeout` seconds, `insert` gives the reader up and throws `.readerBusy`.
    public func insert(timeout: TimeInterval = 5, claimTimeout: TimeInterval = 5) throws {
        guard !isInserted else { throw VPCDError.alreadyInserted }
        let deadline = Date().addingTimeInterval(timeout)
        var lastError: Int32 = 0
        while true {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0 else { throw VPCDError.socket(errno) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &addr.sin_addr)
            // Bounded by the deadline: a blocking connect can hang for minutes when vpcd's
            // listen queue is full (a card already holds the reader), so the socket connects
            // non-blocking and the wait is a poll with what is left of the timeout.
            let rc = VPCDClient.connect(s, &addr, until: deadline)
            if rc == 0 {
                var one: Int32 = 1
                setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                guard VPCDClient.waitReadable(s, timeout: claimTimeout) else {
                    close(s)
                    throw VPCDError.readerBusy(host: host, port: port, waited: claimTimeout)
                }
                lock.withLock { fd = s; serving = true }
                emulator.reset()
                let thread = Thread { [self] in serve(s) }
                thread.name = "vpcd-\(port)"
                thread.start()
                return
            }
            lastError = errno
            close(s)
            if Date() >= deadline { throw VPCDError.connect(host: host, port: port, errno: lastError) }
            usleep(50_000)
        }
    }

    /// `connect` with a deadline: 0 when connected, -1 with `errno` set otherwise
    /// (`ETIMEDOUT` when the deadline passed). The socket is blocking again afterwards.
    static func connect(_ s: Int32, _ addr: inout sockaddr_in, until deadline: Date) -> Int32 {
        let flags = fcntl(s, F_GETFL, 0)
        _ = fcntl(s, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(s, F_SETFL, flags) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc == 0 { return 0 }
        guard errno == EINPROGRESS else { return -1 }
        while true {
            var p = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
            let ms = Int32(max(0, min(Double(Int32.max), deadline.timeIntervalSinceNow * 1000)).rounded(.up))
            let r = poll(&p, 1, ms)
            if r < 0 && errno == EINTR { continue }
            if r == 0 { errno = ETIMEDOUT; return -1 }
            if r < 0 { return -1 }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len)
            if err == 0 { return 0 }
            errno = err
            return -1
        }
    }

    /// Whether `s` has something to read (or was closed) within `timeout` seconds.
    static func waitReadable(_ s: Int32, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            var p = pollfd(fd: s, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(0, min(Double(Int32.max), deadline.timeIntervalSinceNow * 1000)).rounded(.up))
            let r = poll(&p, 1, ms)
            if r > 0 { return true }
            if r < 0 && errno == EINTR { continue }
            return false
        }
    }

    /// Pulls the card: closes the connection; vpcd reports the card gone.
    public func remove() {
        lock.lock()
        if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
        while serving { lock.wait() }
        lock.unlock()
    }

    /// Waits until the card has left the reader (pulled by a misbehaviour or removed).
    public func waitUntilRemoved(timeout: TimeInterval) -> Bool {
        lock.lock(); defer { lock.unlock() }
        let deadline = Date().addingTimeInterval(timeout)
        while serving { if !lock.wait(until: deadline) { return !serving } }
        return true
    }

    private func serve(_ s: Int32) {
        defer {
            close(s)
            lock.withLock { fd = -1; serving = false; lock.broadcast() }
        }
        while true {
            guard let message = readMessage(s) else { return }
            if message.count == 1 {
                switch message[0] {
                case 0x00, 0x01, 0x02: emulator.reset()       // power off / on / reset: no reply
                case 0x04: guard writeMessage(s, CardEmulator.atr) else { return }
                default: logger.warning("unknown vpcd control byte", metadata: ["byte": "\(message[0])"])
                }
                continue
            }
            let arrived = DispatchTime.now().uptimeNanoseconds
            switch emulator.process(message) {
            case .response(let r):
                if let timing { VPCDClient.hold(until: arrived + UInt64(timing.seconds(command: message, response: r) * 1e9)) }
                let held = DispatchTime.now().uptimeNanoseconds - arrived
                lock.withLock { heldNanoseconds += held }
                guard writeMessage(s, r) else { return }
            case .pulled:
                logger.info("card pulled by misbehaviour switch")
                return
            }
        }
    }

    /// Sleeps until the monotonic clock reads `deadline` (nanoseconds), whatever signals interrupt.
    static func hold(until deadline: UInt64) {
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { return }
            let left = deadline - now
            var t = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
            _ = nanosleep(&t, nil)
        }
    }

    private func readExactly(_ s: Int32, _ n: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            // Without QUICKACK every APDU waits for the delayed ACK (~40 ms).
            var one: Int32 = 1
            setsockopt(s, Int32(IPPROTO_TCP), Int32(TCP_QUICKACK), &one, socklen_t(MemoryLayout<Int32>.size))
            let r = buffer.withUnsafeMutableBytes { recv(s, $0.baseAddress! + got, n - got, 0) }
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { return nil }
            got += r
        }
        return buffer
    }

    private func readMessage(_ s: Int32) -> [UInt8]? {
        guard let header = readExactly(s, 2) else { return nil }
        let length = Int(header[0]) << 8 | Int(header[1])
        guard length > 0 else { return [] }
        return readExactly(s, length)
    }

    private func writeMessage(_ s: Int32, _ payload: [UInt8]) -> Bool {
        let out = [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
        var sent = 0
        while sent < out.count {
            let r = out.withUnsafeBytes { send(s, $0.baseAddress! + sent, out.count - sent, Int32(MSG_NOSIGNAL)) }
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { return false }
            sent += r
        }
        return true
    }
}

/// Why the card could not be put into a vpcd reader.
public enum VPCDError: Error, CustomStringConvertible {
    /// No socket could be made (the `errno`).
    case socket(Int32)
    /// vpcd could not be reached before the timeout (the last `errno`).
    case connect(host: String, port: UInt16, errno: Int32)
    /// vpcd accepted the connection but never spoke: another card holds that reader.
    case readerBusy(host: String, port: UInt16, waited: TimeInterval)
    /// `insert` on a card already in the reader.
    case alreadyInserted
    /// The error as one line, with what to do.
    public var description: String {
        switch self {
        case .readerBusy(let h, let p, let w):
            return "the vpcd reader at \(h):\(p) is taken: another virtual card is connected to that port "
                + "(vpcd queued this one and sent no power-on/ATR request within \(Int(w)) s); stop the other card or use another --port"
        case .alreadyInserted: return "the card is already in the reader"
        case .socket(let e): return "cannot make a socket: \(String(cString: strerror(e)))"
        case .connect(let h, let p, let e):
            return "cannot reach vpcd at \(h):\(p): \(String(cString: strerror(e))) (is pcscd with vsmartcard-vpcd running?)"
        }
    }
}
