import KioskProtocol
import Foundation

/// Why a byte stream is not one `ESCPOSDecoder` understands.
public enum ESCPOSDecodeError: Error, Equatable, CustomStringConvertible {
    /// A control byte or escape sequence the decoder does not know, at this offset.
    case unknownCommand(offset: Int, bytes: [UInt8])
    /// The stream ends inside a command (or its raster data).
    case truncated(offset: Int)
    /// A command parameter out of its range.
    case invalidParameter(offset: Int, value: UInt8)
    /// Text bytes that are not GB18030, in the line starting at this offset.
    case invalidText(offset: Int)
    /// Bytes above 0x7F before `FS &` selected Chinese mode.
    case textOutsideChineseMode(offset: Int)
    /// Text at the end of the stream with no `LF` to print it.
    case unterminatedText(offset: Int)
    /// A raster image while text waits in the line buffer (printers ignore or misplace it).
    case rasterWithPendingText(offset: Int)

    /// The error as one line, with the byte offset.
    public var description: String {
        switch self {
        case .unknownCommand(let o, let b): return "unknown ESC/POS command \(b.map { Hex.encode([$0], uppercase: true) }.joined(separator: " ")) at \(o)"
        case .truncated(let o): return "ESC/POS stream truncated in the command at \(o)"
        case .invalidParameter(let o, let v): return "invalid ESC/POS parameter \(v) at \(o)"
        case .invalidText(let o): return "text at \(o) is not GB18030"
        case .textOutsideChineseMode(let o): return "non-ASCII text at \(o) before FS & (Chinese mode)"
        case .unterminatedText(let o): return "text at \(o) never printed (no LF)"
        case .rasterWithPendingText(let o): return "raster image at \(o) while text waits unprinted"
        }
    }
}

/// What an ESC/POS stream prints, as `ESCPOSDecoder` reads it.
public struct ESCPOSDocument: Sendable, Equatable {
    /// One printed text line with the formatting in force when it printed.
    public struct Line: Sendable, Equatable {
        /// The alignment in force (`ESC a n`).
        public enum Alignment: Sendable, Equatable { case left, center, right }
        /// The line's text, decoded from GB18030.
        public var text: String
        /// Its alignment.
        public var alignment: Alignment
        /// Whether bold (`ESC E n`) was on.
        public var bold: Bool
        /// Character width and height multipliers (`GS !`), 1…8.
        public var widthScale: Int
        /// The character height multiplier (`GS !`), 1…8.
        public var heightScale: Int
    }

    /// Printed lines, in order.
    public var lines: [Line]
    /// Raster images (`GS v 0`), in order.
    public var rasters: [Bitmap]
    /// Paper cuts.
    public var cuts: Int

    /// The text of every printed line, decoded from GB18030.
    public var textLines: [String] { lines.map(\.text) }
}

/// Reads back the ESC/POS subset `ESCPOS` writes, for tests and previews. Anything else is refused with
/// an `ESCPOSDecodeError`, never a crash; allocation is bounded by the input's length.
public enum ESCPOSDecoder {
    /// Decodes a whole stream.
    public static func decode(_ bytes: [UInt8]) throws -> ESCPOSDocument {
        var reader = Reader(bytes: bytes)
        while reader.i < bytes.count {
            try reader.step()
        }
        guard reader.pending.isEmpty else { throw ESCPOSDecodeError.unterminatedText(offset: reader.pendingStart) }
        return reader.doc
    }

    /// The decoder's position, the formatting in force and the text waiting for its `LF`.
    private struct Reader {
        /// The whole stream.
        let bytes: [UInt8]
        /// What was printed so far.
        var doc = ESCPOSDocument(lines: [], rasters: [], cuts: 0)
        /// The alignment in force.
        var alignment = ESCPOSDocument.Line.Alignment.left
        /// Whether bold is on.
        var bold = false
        /// The character width multiplier in force.
        var width = 1
        /// The character height multiplier in force.
        var height = 1
        /// Whether `FS &` selected Chinese mode.
        var chinese = false
        /// Text bytes waiting for an `LF`.
        var pending: [UInt8] = []
        /// The offset of the first pending text byte.
        var pendingStart = 0
        /// The offset of the next byte to read.
        var i = 0

        /// A reader at the start of `bytes`.
        init(bytes: [UInt8]) { self.bytes = bytes }

        /// Throws `truncated` (at `start`) unless `n` bytes are left from the current offset.
        func need(_ n: Int, at start: Int) throws {
            guard i + n <= bytes.count else { throw ESCPOSDecodeError.truncated(offset: start) }
        }

        /// Prints the pending text as one line with the formatting in force.
        mutating func flush() throws {
            guard let text = String(data: Data(pending), encoding: ESCPOS.gb18030) else {
                throw ESCPOSDecodeError.invalidText(offset: pendingStart)
            }
            doc.lines.append(.init(text: text, alignment: alignment, bold: bold, widthScale: width, heightScale: height))
            pending.removeAll(keepingCapacity: true)
        }

        /// Reads one command or text byte at the current offset.
        mutating func step() throws {
            let start = i
            let b = bytes[i]
            switch b {
            case 0x0A:                                             // LF: print the line
                try flush()
                i += 1
            case 0x1B:                                             // ESC
                try escape(at: start)
            case 0x1C:                                             // FS
                try fileSeparator(at: start)
            case 0x1D:                                             // GS
                try groupSeparator(at: start)
            case 0x20...0x7E, 0x80...0xFF:                         // text (GB18030 trail bytes are ≥ 0x30)
                if b >= 0x80 && !chinese { throw ESCPOSDecodeError.textOutsideChineseMode(offset: start) }
                if pending.isEmpty { pendingStart = start }
                pending.append(b)
                i += 1
            default:
                throw ESCPOSDecodeError.unknownCommand(offset: start, bytes: [b])
            }
        }

        /// An `ESC` command starting at `start`.
        mutating func escape(at start: Int) throws {
            try need(2, at: start)
            switch bytes[i + 1] {
            case 0x40:                                         // ESC @: initialize
                alignment = .left; bold = false; width = 1; height = 1; chinese = false
                pending.removeAll()
                i += 2
            case 0x61:                                         // ESC a n: alignment
                try need(3, at: start)
                switch bytes[i + 2] {
                case 0, 48: alignment = .left
                case 1, 49: alignment = .center
                case 2, 50: alignment = .right
                default: throw ESCPOSDecodeError.invalidParameter(offset: start + 2, value: bytes[i + 2])
                }
                i += 3
            case 0x45:                                         // ESC E n: bold if bit 0
                try need(3, at: start)
                bold = bytes[i + 2] & 1 == 1
                i += 3
            case 0x32:                                         // ESC 2: default line spacing
                i += 2
            case 0x33:                                         // ESC 3 n: line spacing
                try need(3, at: start)
                i += 3
            case 0x64:                                         // ESC d n: print and feed n lines
                try need(3, at: start)
                if !pending.isEmpty { try flush() }
                i += 3
            default:
                throw ESCPOSDecodeError.unknownCommand(offset: start, bytes: Array(bytes[i...i + 1]))
            }
        }

        /// An `FS` command starting at `start`.
        mutating func fileSeparator(at start: Int) throws {
            try need(2, at: start)
            switch bytes[i + 1] {
            case 0x26: chinese = true                          // FS &: Chinese mode
            case 0x2E: chinese = false                         // FS .: cancel Chinese mode
            default: throw ESCPOSDecodeError.unknownCommand(offset: start, bytes: Array(bytes[i...i + 1]))
            }
            i += 2
        }

        /// A `GS` command starting at `start`.
        mutating func groupSeparator(at start: Int) throws {
            try need(2, at: start)
            switch bytes[i + 1] {
            case 0x21:                                         // GS ! n: size
                try need(3, at: start)
                let n = bytes[i + 2]
                guard n & 0x0F <= 7, n >> 4 <= 7 else { throw ESCPOSDecodeError.invalidParameter(offset: start + 2, value: n) }
                width = Int(n >> 4) + 1
                height = Int(n & 0x0F) + 1
                i += 3
            case 0x76:                                         // GS v 0 m xL xH yL yH d…
                try raster(at: start)
            case 0x56:                                         // GS V m [n]: cut
                try need(3, at: start)
                switch bytes[i + 2] {
                case 0, 1, 48, 49: i += 3
                case 65, 66: try need(4, at: start); i += 4
                default: throw ESCPOSDecodeError.invalidParameter(offset: start + 2, value: bytes[i + 2])
                }
                guard pending.isEmpty else { throw ESCPOSDecodeError.unterminatedText(offset: pendingStart) }
                doc.cuts += 1
            default:
                throw ESCPOSDecodeError.unknownCommand(offset: start, bytes: Array(bytes[i...i + 1]))
            }
        }

        /// A `GS v 0` raster image starting at `start`.
        mutating func raster(at start: Int) throws {
            try need(8, at: start)
            guard bytes[i + 2] == 0x30 else {
                throw ESCPOSDecodeError.unknownCommand(offset: start, bytes: Array(bytes[i...i + 2]))
            }
            guard bytes[i + 3] == 0 || bytes[i + 3] == 48 else {
                throw ESCPOSDecodeError.invalidParameter(offset: start + 3, value: bytes[i + 3])
            }
            guard pending.isEmpty else { throw ESCPOSDecodeError.rasterWithPendingText(offset: start) }
            let rowBytes = Int(bytes[i + 4]) | Int(bytes[i + 5]) << 8
            let rows = Int(bytes[i + 6]) | Int(bytes[i + 7]) << 8
            guard rowBytes > 0 else { throw ESCPOSDecodeError.invalidParameter(offset: start + 4, value: 0) }
            guard rows > 0 else { throw ESCPOSDecodeError.invalidParameter(offset: start + 6, value: 0) }
            i += 8
            try need(rowBytes * rows, at: start)
            let packed = PackedRaster(width: rowBytes * 8, height: rows, bytes: Array(bytes[i..<(i + rowBytes * rows)]))
            doc.rasters.append(packed.bitmap)
            i += rowBytes * rows
        }
    }
}
