import Foundation

/// Compact JSON, keys in UTF-8 byte order, `/` not escaped: byte for byte what `JSONEncoder`
/// with `[.sortedKeys, .withoutEscapingSlashes]` writes (tested on every record kind and on
/// every character class), for values made of objects, arrays, strings, integers, booleans
/// and null. Issue 24 item 4: a record's body took 100,000 instructions through `JSONEncoder`
/// (its keys sorted with Unicode-aware comparisons), 65,000 through this.
///
/// A floating-point value, `Data`, `URL`, `Decimal`, `Date`, or a value that encodes nothing,
/// throws `EncodingError`: no record holds one, and `JSONEncoder` writes those its own way.
public enum CompactJSON {
    /// The value's JSON bytes.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let node = try node(value, at: [])
        var out: [UInt8] = []
        out.reserveCapacity(768)
        node.write(into: &out)
        return out
    }

    /// The value's JSON text.
    public static func string<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encode(value), as: UTF8.self)
    }

    /// A JSON value being built; written out once, at the end. Objects and arrays are boxes:
    /// containers add to them after they are placed in their parent.
    enum Node {
        case string(String)
        case int(Int64)
        case uint(UInt64)
        case bool(Bool)
        case null
        case object(Members)
        case array(Elements)

        func write(into out: inout [UInt8]) {
            switch self {
            case .string(let s): CompactJSON.writeString(s, into: &out)
            case .int(let i):
                if i < 0 { out.append(UInt8(ascii: "-")) }
                CompactJSON.writeDigits(i.magnitude, into: &out)
            case .uint(let u): CompactJSON.writeDigits(u, into: &out)
            case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
            case .null: out.append(contentsOf: "null".utf8)
            case .object(let members):
                out.append(UInt8(ascii: "{"))
                for (i, m) in members.sorted().enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    CompactJSON.writeString(m.key, into: &out)
                    out.append(UInt8(ascii: ":"))
                    m.value.write(into: &out)
                }
                out.append(UInt8(ascii: "}"))
            case .array(let elements):
                out.append(UInt8(ascii: "["))
                for (i, e) in elements.items.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    e.write(into: &out)
                }
                out.append(UInt8(ascii: "]"))
            }
        }

        /// An integer's node: signed ones as `Int64`, unsigned ones as `UInt64`.
        static func integer<I: BinaryInteger>(_ i: I) -> Node {
            if let s = Int64(exactly: i) { return .int(s) }
            return .uint(UInt64(i))
        }
    }

    /// An object's members; a key given again replaces its value, as `JSONEncoder` does. Each
    /// key's first eight UTF-8 bytes, as one number, settle almost every comparison.
    final class Members {
        struct Member {
            var key: String
            var prefix: UInt64
            var value: Node
        }
        var items: [Member] = []

        func set(_ key: String, _ value: Node) {
            let prefix = Members.prefix(key)
            if let i = items.firstIndex(where: { $0.prefix == prefix && $0.key == key }) { items[i].value = value; return }
            items.append(Member(key: key, prefix: prefix, value: value))
        }

        /// The members in key order (UTF-8 bytes).
        func sorted() -> [Member] {
            items.sorted { $0.prefix != $1.prefix ? $0.prefix < $1.prefix : CompactJSON.precedes($0.key, $1.key) }
        }

        /// The first eight bytes, big-endian, zero-padded: ordered as the keys are, ties aside.
        static func prefix(_ key: String) -> UInt64 {
            var p: UInt64 = 0, shift: UInt64 = 56
            for byte in key.utf8.prefix(8) {
                p |= UInt64(byte) << shift
                shift &-= 8
            }
            return p
        }
    }

    /// A number's decimal digits, most significant first.
    static func writeDigits(_ n: UInt64, into out: inout [UInt8]) {
        var divisor: UInt64 = 1
        while n / divisor >= 10 { divisor *= 10 }   // at most 10^19, which UInt64 holds
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8((n / divisor) % 10))
            divisor /= 10
        }
    }

    /// UTF-8 byte order, the order `JSONEncoder`'s `.sortedKeys` writes.
    static func precedes(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let n = min(x.count, y.count)
                let c = n == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, n)
                return c != 0 ? c < 0 : x.count < y.count
            }
        }
    }

    /// An array's elements, in order.
    final class Elements {
        var items: [Node] = []
    }

    /// A string, quoted and escaped as `JSONEncoder` escapes it. Most strings need no escape
    /// and are copied whole.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        var s = s
        s.withUTF8 { bytes in
            out.append(UInt8(ascii: "\""))
            guard bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
                out.append(contentsOf: bytes)
                out.append(UInt8(ascii: "\""))
                return
            }
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
                case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
                case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
                case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
                case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
                case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
                case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
                default: out.append(byte)
                }
            }
            out.append(UInt8(ascii: "\""))
        }
    }

    /// Encodes `value` to a node of its own.
    static func node<T: Encodable>(_ value: T, at path: [any CodingKey]) throws -> Node {
        if let s = value as? String { return .string(s) }
        // Types JSONEncoder writes its own way (base64, a URL's text, a number): refused here.
        if value is Data || value is URL || value is Decimal || value is Date {
            throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "CompactJSON writes no \(T.self)"))
        }
        let encoder = Writer(codingPath: path)
        try value.encode(to: encoder)
        guard let node = encoder.node else {
            throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "the value encoded nothing"))
        }
        return node
    }

    static func unsupported(_ value: Any, _ path: [any CodingKey]) -> EncodingError {
        EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "no floating-point value is written"))
    }
}
