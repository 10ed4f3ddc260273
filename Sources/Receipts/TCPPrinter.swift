import Foundation
import Glibc

/// A network printer on a raw TCP port (JetDirect, 9100). Each `send` opens one connection, reads the
/// status (`DLE EOT`) unless told not to, sends the receipt, half-closes and waits briefly for the
/// printer to close. Every step is bounded by `timeout`; name resolution uses the system resolver.
public final class TCPPrinter: PrinterTransport, Sendable {
    /// Host name or address.
    public let host: String
    /// TCP port, normally 9100.
    public let port: UInt16
    /// Bound on each step: connecting, each status reply, the whole write, the wait for the printer to close.
    public let timeout: TimeInterval
    /// Whether to read the status before printing (a two-way link).
    public let checksStatus: Bool
    private let lock = NSLock()   // one receipt at a time from this process

    /// A printer at `host:port`; nothing is opened until `send` or `status`.
    public init(host: String, port: UInt16 = 9100, timeout: TimeInterval = 5, checksStatus: Bool = true) {
        precondition(timeout > 0, "timeout must be positive")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.checksStatus = checksStatus
    }

    /// Reads the status, then sends `bytes`.
    /// - Throws: `PrinterError` — a fault (nothing printed), `.unreachable`, `.timeout`, `.ioFailed`.
    public func send(_ bytes: [UInt8]) throws {
        lock.lock()
        defer { lock.unlock() }
        let link = try connect()
        defer { link.close() }
        if checksStatus { try link.queryStatus(until: PosixLink.deadline(after: timeout)).check() }
        try link.writeAll(bytes, until: PosixLink.deadline(after: timeout))
        link.shutdownWrite()
        link.drainUntilClosed(until: PosixLink.deadline(after: min(timeout, 2)))
    }

    /// Connects and reads `DLE EOT 1, 2, 4`.
    /// - Throws: `PrinterError.unreachable`, `.timeout`, `.badStatusReply`, `.ioFailed`.
    public func status() throws -> PrinterStatus? {
        lock.lock()
        defer { lock.unlock() }
        let link = try connect()
        defer { link.close() }
        return try link.queryStatus(until: PosixLink.deadline(after: timeout))
    }

    private func connect() throws -> PosixLink {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw PrinterError.unreachable("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        let deadline = PosixLink.deadline(after: timeout)
        var lastError = "no address for \(host)"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            guard fd >= 0 else { lastError = PosixLink.describe(errno); continue }
            let link = PosixLink(fd: fd, isSocket: true)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return link }
            guard errno == EINPROGRESS else { lastError = PosixLink.describe(errno); continue }
            _ = try PosixLink.wait(fd, for: Int16(POLLOUT), until: deadline)
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError == 0 { return link }
            lastError = PosixLink.describe(soError)
        }
        throw PrinterError.unreachable("\(host):\(port): \(lastError)")
    }
}
