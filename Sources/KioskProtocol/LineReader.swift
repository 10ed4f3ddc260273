import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one line reader of the contract's files (snapshots, roster changes): lines split at
/// `\n`, read in large chunks, in constant memory whatever the file's size.
///
/// A line is at most `maxLine` bytes (its `\n` not counted; snapshot spec §1: 64 KiB). The
/// bound is checked while reading: once `maxLine + 1` bytes of one line are buffered without
/// its end, the reader stops with `TooLong`, so a file of one endless line never costs more
/// than one chunk plus one line of memory.
public struct LineReader {
    /// The longest line the specs allow: 64 KiB.
    public static let maxLine = 64 * 1024
    /// Bytes read from a file at a time: 1 MiB.
    public static let chunk = 1 << 20

    /// A line longer than the bound; `line` is its number, counted from 1.
    public struct TooLong: Error, CustomStringConvertible, Equatable, Sendable {
        /// The line's number, counted from 1.
        public var line: Int
        /// The bound it broke.
        public var maxLine: Int
        /// `line N is longer than M bytes`.
        public var description: String { "line \(line) is longer than \(maxLine) bytes" }
        /// Line `line` broke the bound `maxLine`.
        public init(line: Int, maxLine: Int) { self.line = line; self.maxLine = maxLine }
    }

    let handle: FileHandle?
    /// The bound on a line's length, its `\n` not counted.
    public let maxLine: Int
    let chunkSize: Int
    var buffer = [UInt8]()
    var start = 0
    var eof = false
    /// Lines handed out so far: the next line's number is `lines + 1`.
    public private(set) var lines = 0
    /// Bytes read from the file so far.
    public private(set) var bytesRead = 0
    /// The most bytes the buffer ever held (tests check the memory bound with it).
    public private(set) var peakBuffered = 0

    /// Reads the file behind `handle` from where it stands; the caller closes it.
    public init(handle: FileHandle, maxLine: Int = LineReader.maxLine, chunkSize: Int = LineReader.chunk) {
        self.handle = handle; self.maxLine = maxLine; self.chunkSize = chunkSize
    }

    /// Reads bytes already in memory (a roster change received whole), with the same bound.
    public init(bytes: [UInt8], maxLine: Int = LineReader.maxLine) {
        handle = nil; self.maxLine = maxLine; chunkSize = 0
        buffer = bytes; bytesRead = bytes.count; peakBuffered = bytes.count; eof = true
    }

    /// The next line including its `\n` (the last may lack one), or nil at the end.
    /// - Throws: `TooLong`, or what reading the file throws.
    public mutating func next() throws -> ArraySlice<UInt8>? {
        while true {
            let available = buffer.count - start
            if available > 0 {
                // Only the first maxLine + 1 bytes can hold the end of a line that may be kept.
                let window = min(available, maxLine + 1)
                let from = start
                let nl: Int? = buffer.withUnsafeBytes { b in
                    memchr(b.baseAddress! + from, 0x0A, window).map { UnsafeRawPointer($0) - b.baseAddress! }
                }
                if let nl {
                    let line = buffer[start...nl]
                    start = nl + 1
                    lines += 1
                    return line
                }
                if available > maxLine { throw TooLong(line: lines + 1, maxLine: maxLine) }
            }
            if eof {
                guard start < buffer.count else { return nil }
                let line = buffer[start...]
                start = buffer.count
                lines += 1
                return line
            }
            if start > 0 { buffer.removeFirst(start); start = 0 }
            let chunk = try handle?.read(upToCount: chunkSize) ?? Data()
            if chunk.isEmpty { eof = true } else {
                buffer.append(contentsOf: chunk)
                bytesRead += chunk.count
                peakBuffered = max(peakBuffered, buffer.count)
            }
        }
    }

    /// The next line without its `\n`, or nil at the end.
    /// - Throws: `TooLong`, or what reading the file throws.
    public mutating func nextWithoutNewline() throws -> ArraySlice<UInt8>? {
        guard let line = try next() else { return nil }
        return line.last == 0x0A ? line.dropLast() : line
    }

    /// Calls `body` with each line of `file` in order, without its newline.
    /// - Throws: `TooLong`, what opening or reading the file throws, or what `body` throws
    ///   (which stops the reading).
    public static func each(_ file: URL, maxLine: Int = LineReader.maxLine, _ body: (ArraySlice<UInt8>) throws -> Void) throws {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var reader = LineReader(handle: handle, maxLine: maxLine)
        while let line = try reader.nextWithoutNewline() { try body(line) }
    }

    /// Calls `body` with each line of `bytes` in order, without its newline.
    /// - Throws: `TooLong`, or what `body` throws (which stops the reading).
    public static func each(_ bytes: [UInt8], maxLine: Int = LineReader.maxLine, _ body: (ArraySlice<UInt8>) throws -> Void) throws {
        var reader = LineReader(bytes: bytes, maxLine: maxLine)
        while let line = try reader.nextWithoutNewline() { try body(line) }
    }
}

/// The first line of a stream that arrives in chunks (an upload, a copy): collected until
/// its `\n`, with the same bound as `LineReader`.
public struct FirstLine {
    var pending: [UInt8]? = []
    let maxLine: Int

    /// Collects at most `maxLine` bytes.
    public init(maxLine: Int = LineReader.maxLine) { self.maxLine = maxLine }

    /// Whether the line is still being collected.
    public var isOpen: Bool { pending != nil }

    /// Feeds the next chunk; returns the line (without `\n`) once it is whole, once only.
    /// - Throws: `LineReader.TooLong` when more than `maxLine` bytes arrived without a `\n`.
    public mutating func feed<Bytes: Sequence>(_ chunk: Bytes) throws(LineReader.TooLong) -> [UInt8]? where Bytes.Element == UInt8 {
        guard var p = pending else { return nil }
        let before = p.count
        p.append(contentsOf: chunk)
        if let nl = p[before...].firstIndex(of: 0x0A), nl <= maxLine {
            pending = nil
            return Array(p[..<nl])
        }
        guard p.count <= maxLine else { pending = nil; throw LineReader.TooLong(line: 1, maxLine: maxLine) }
        pending = p
        return nil
    }

    /// What was collected when the stream ended without a `\n` (a file of one line), or nil
    /// when the line was already handed over.
    public mutating func finish() -> [UInt8]? {
        defer { pending = nil }
        return pending
    }
}
