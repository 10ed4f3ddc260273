import Foundation
import Glibc

/// One open, non-blocking file descriptor (socket or device) with deadline-bounded reads and writes.
/// Owned by one transport call; closed by `close()` or at `deinit`. Linux (Glibc) only, like the kiosk.
final class PosixLink {
    private var fd: Int32
    private let isSocket: Bool

    init(fd: Int32, isSocket: Bool) {
        self.fd = fd
        self.isSocket = isSocket
    }

    deinit { close() }

    func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }

    /// A deadline `seconds` from now, in monotonic nanoseconds.
    static func deadline(after seconds: TimeInterval) -> UInt64 {
        DispatchTime.now().uptimeNanoseconds + UInt64(max(0, seconds) * 1_000_000_000)
    }

    /// Waits until `events` are ready on `fd` or the deadline passes.
    /// - Throws: `PrinterError.timeout`.
    static func wait(_ fd: Int32, for events: Int16, until deadline: UInt64) throws -> Int16 {
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { throw PrinterError.timeout }
            let ms = Int32(min(UInt64(Int32.max), (deadline - now + 999_999) / 1_000_000))
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&pfd, 1, ms)
            if n > 0 { return pfd.revents }
            if n < 0 && errno != EINTR { throw PrinterError.ioFailed("poll: \(String(cString: strerror(errno)))") }
        }
    }

    /// Writes every byte before the deadline.
    /// - Throws: `PrinterError.timeout`, `.ioFailed`.
    func writeAll(_ bytes: [UInt8], until deadline: UInt64) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { buffer -> Int in
                let p = buffer.baseAddress! + offset
                return isSocket ? Glibc.send(fd, p, bytes.count - offset, Int32(MSG_NOSIGNAL)) : Glibc.write(fd, p, bytes.count - offset)
            }
            if n > 0 { offset += n; continue }
            let e = errno
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) {
                _ = try PosixLink.wait(fd, for: Int16(POLLOUT), until: deadline)
                continue
            }
            throw PrinterError.ioFailed("write: \(String(cString: strerror(e)))")
        }
    }

    /// Reads one byte before the deadline.
    /// - Throws: `PrinterError.timeout`; `.ioFailed` when the link closes.
    func readByte(until deadline: UInt64) throws -> UInt8 {
        var byte: UInt8 = 0
        while true {
            let n = Glibc.read(fd, &byte, 1)
            if n == 1 { return byte }
            if n == 0 { throw PrinterError.ioFailed("the printer closed the link") }
            let e = errno
            guard e == EAGAIN || e == EWOULDBLOCK || e == EINTR else {
                throw PrinterError.ioFailed("read: \(String(cString: strerror(e)))")
            }
            _ = try PosixLink.wait(fd, for: Int16(POLLIN), until: deadline)
        }
    }

    /// Discards what is already waiting to be read (stale replies, automatic status), at most `limit` bytes.
    func discardPendingInput(limit: Int = 4096) {
        var buffer = [UInt8](repeating: 0, count: 256)
        var total = 0
        while total < limit {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            total += n
        }
    }

    /// Reads and discards until the peer closes or the deadline passes (after our own half-close), so
    /// that closing never resets a connection with data still unread.
    func drainUntilClosed(until deadline: UInt64) {
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 { continue }
            if n == 0 { return }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { return }
            guard (try? PosixLink.wait(fd, for: Int16(POLLIN), until: deadline)) != nil else { return }
        }
    }

    /// Half-closes a socket for writing.
    func shutdownWrite() {
        if isSocket { _ = shutdown(fd, Int32(SHUT_WR)) }
    }

    /// Asks `DLE EOT 1`, `2` and `4`, one reply byte each, every reply before the deadline.
    /// - Throws: `PrinterError.timeout`, `.badStatusReply`, `.ioFailed`.
    func queryStatus(until deadline: UInt64) throws -> PrinterStatus {
        discardPendingInput()
        var replies: [UInt8] = []
        for n: UInt8 in [1, 2, 4] {
            try writeAll([0x10, 0x04, n], until: deadline)
            replies.append(try readByte(until: deadline))
        }
        return try PrinterStatus(printer: replies[0], offlineCause: replies[1], paper: replies[2])
    }

    static func describe(_ e: Int32) -> String { String(cString: strerror(e)) }
}
