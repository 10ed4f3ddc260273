import Foundation
import Glibc

/// Receipts written to files: for tests, previews and a kiosk without a printer. One-way (no status).
public struct FilePrinter: PrinterTransport {
    /// How receipts land on disk.
    public enum Mode: Sendable, Equatable {
        /// Each receipt its own file `receipt-<Unix ms>-<n>.escpos` in the folder (created if missing),
        /// written under a temporary name and linked into place whole, never overwriting.
        case folder
        /// Every receipt appended to one file (created if missing).
        case append
    }

    /// The folder or the file.
    public let url: URL
    /// One file per receipt, or one file for all.
    public let mode: Mode

    /// A folder if `url` is one (or names one with a trailing `/`), else a file to append to.
    public init(url: URL) {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir)
        self.init(url: url, mode: url.hasDirectoryPath || (exists && isDir.boolValue) ? .folder : .append)
    }

    /// A folder or a file, as told.
    public init(url: URL, mode: Mode) {
        self.url = url
        self.mode = mode
    }

    /// Writes one receipt.
    /// - Throws: `PrinterError.unreachable` (cannot create or open), `.ioFailed`.
    public func send(_ bytes: [UInt8]) throws {
        try write(bytes)
    }

    /// Writes one receipt and returns the file it went to.
    /// - Throws: `PrinterError.unreachable` (cannot create or open), `.ioFailed`.
    @discardableResult
    public func write(_ bytes: [UInt8]) throws -> URL {
        switch mode {
        case .append:
            let fd = open(url.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw PrinterError.unreachable("\(url.path): \(PosixLink.describe(errno))") }
            defer { _ = close(fd) }
            try FilePrinter.writeAll(fd, bytes, path: url.path)
            return url
        case .folder:
            do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
                throw PrinterError.unreachable("\(url.path): cannot create the folder")
            }
            let temporary = url.appendingPathComponent(".receipt-\(UUID().uuidString).tmp")
            let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw PrinterError.unreachable("\(temporary.path): \(PosixLink.describe(errno))") }
            defer { _ = unlink(temporary.path) }
            do {
                defer { _ = close(fd) }
                try FilePrinter.writeAll(fd, bytes, path: temporary.path)
                guard fsync(fd) == 0 else { throw PrinterError.ioFailed("\(temporary.path): \(PosixLink.describe(errno))") }
            }
            let ms = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
            for n in 1...1000 {
                let name = url.appendingPathComponent("receipt-\(ms)-\(n).escpos")
                if link(temporary.path, name.path) == 0 { return name }
                guard errno == EEXIST else { throw PrinterError.ioFailed("\(name.path): \(PosixLink.describe(errno))") }
            }
            throw PrinterError.ioFailed("\(url.path): no free receipt file name for \(ms)")
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n > 0 { offset += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw PrinterError.ioFailed("\(path): \(PosixLink.describe(errno))")
        }
    }
}
