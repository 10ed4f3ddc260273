import Foundation
import Glibc

/// A printer behind a device file: USB (`/dev/usb/lp0`, the `usblp` driver) or serial (`/dev/ttyUSB0`;
/// a terminal is switched to raw mode). Opened read-write for each `send`, so the status (`DLE EOT`) is read
/// before printing unless told not to; every step is bounded by `timeout`.
public final class DevicePrinter: PrinterTransport, Sendable {
    /// The device file.
    public let path: String
    /// Bound on each step: each status reply, the whole write.
    public let timeout: TimeInterval
    /// Whether to read the status before printing (the printer answers on this link).
    public let checksStatus: Bool
    private let lock = NSLock()   // the device takes one writer; one receipt at a time

    /// A printer at `path`; nothing is opened until `send` or `status`.
    public init(path: String, timeout: TimeInterval = 5, checksStatus: Bool = true) {
        precondition(timeout > 0, "timeout must be positive")
        self.path = path
        self.timeout = timeout
        self.checksStatus = checksStatus
    }

    /// Reads the status, then writes `bytes`.
    /// - Throws: `PrinterError` — a fault (nothing printed), `.unreachable`, `.timeout`, `.ioFailed`.
    public func send(_ bytes: [UInt8]) throws {
        lock.lock()
        defer { lock.unlock() }
        let link = try open()
        defer { link.close() }
        if checksStatus { try link.queryStatus(until: PosixLink.deadline(after: timeout)).check() }
        try link.writeAll(bytes, until: PosixLink.deadline(after: timeout))
    }

    /// Opens the device and reads `DLE EOT 1, 2, 4`.
    /// - Throws: `PrinterError.unreachable`, `.timeout`, `.badStatusReply`, `.ioFailed`.
    public func status() throws -> PrinterStatus? {
        lock.lock()
        defer { lock.unlock() }
        let link = try open()
        defer { link.close() }
        return try link.queryStatus(until: PosixLink.deadline(after: timeout))
    }

    private func open() throws -> PosixLink {
        let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw PrinterError.unreachable("\(path): \(PosixLink.describe(errno))") }
        let link = PosixLink(fd: fd, isSocket: false)
        if isatty(fd) == 1 {
            var mode = termios()
            guard tcgetattr(fd, &mode) == 0 else { throw PrinterError.unreachable("\(path): \(PosixLink.describe(errno))") }
            cfmakeraw(&mode)
            guard tcsetattr(fd, TCSANOW, &mode) == 0 else { throw PrinterError.unreachable("\(path): \(PosixLink.describe(errno))") }
        }
        return link
    }
}
