/// Hexadecimal text of bytes, the one implementation every module uses: the specs' digests,
/// `person_ref` and keys are lowercase (`Hex.encode`); APDUs and status words are shown
/// uppercase (`Hex.encode(_:uppercase: true)`).
public enum Hex {
    static let lower: [UInt8] = Array("0123456789abcdef".utf8)
    static let upper: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// Two digits a byte, no separators.
    /// - Parameters:
    ///   - bytes: what to write.
    ///   - uppercase: `A`–`F` instead of `a`–`f`.
    public static func encode<Bytes: Sequence>(_ bytes: Bytes, uppercase: Bool = false) -> String where Bytes.Element == UInt8 {
        let digits = uppercase ? upper : lower
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the two lowercase digits of `byte` to `out` (JSON `\u00XX` escapes and the like).
    public static func append(_ byte: UInt8, to out: inout [UInt8]) {
        out.append(lower[Int(byte >> 4)])
        out.append(lower[Int(byte & 0x0F)])
    }

    /// How strictly `decode` reads its text.
    public enum Form: Sendable {
        /// Lowercase digits only, nothing else: the specs' form (digests, `person_ref`, keys).
        case lowercase
        /// Either case, and whitespace between digits ignored: what a technician types.
        case lenient
    }

    /// The bytes `text` spells, or nil when it is not hex of the given form (an odd number
    /// of digits, a character that is not a digit).
    public static func decode(_ text: String, _ form: Form = .lowercase) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count / 2)
        var high: UInt8?
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            case 0x41...0x46 where form == .lenient: v = c - 0x41 + 10
            case 0x20, 0x09, 0x0A, 0x0D:
                // (A `where` after several patterns would guard only the last one.)
                guard form == .lenient else { return nil }
                continue
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return high == nil ? out : nil
    }
}
