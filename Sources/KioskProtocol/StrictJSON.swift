import Foundation

/// The one strict JSON reader of the contract (RFC 8259): it checks the syntax (UTF-8, escapes,
/// numbers, nesting at most `maxDepth` deep, nothing after the value) and says where each value
/// lies in the bytes, so a hub keeps every record's exact text and hashes exactly what a kiosk
/// sent; `flatObject(_:)` reads the receipt's flat header and payload objects on top of it.
public enum StrictJSON {
    /// Where and why the text is not JSON.
    public struct SyntaxError: Error, CustomStringConvertible, Sendable {
        /// The byte offset where reading stopped.
        public var offset: Int
        /// What was wrong there, in words.
        public var what: String
        /// `invalid JSON at byte N: what`.
        public var description: String { "invalid JSON at byte \(offset): \(what)" }
    }

    /// Deepest nesting accepted (a bound on the recursion).
    public static let maxDepth = 64

    /// The members of a top-level object: each key (decoded) and its value's byte range.
    /// - Throws: `SyntaxError` when `bytes` is not exactly one JSON object.
    public static func objectMembers(_ bytes: [UInt8]) throws -> [(key: String, value: Range<Int>)] {
        try bytes.withUnsafeBufferPointer { b in
            var s = Scanner(b: b)
            s.skipWhitespace()
            let members = try s.object(depth: 0, collect: true)
            s.skipWhitespace()
            guard s.i == b.count else { throw SyntaxError(offset: s.i, what: "text after the JSON value") }
            return members
        }
    }

    /// The byte ranges of the elements of the array at `range` (already checked by
    /// `objectMembers`); nil when the value there is not an array.
    public static func arrayElements(_ bytes: [UInt8], in range: Range<Int>) throws -> [Range<Int>]? {
        try bytes.withUnsafeBufferPointer { b in
            var s = Scanner(b: b)
            s.i = range.lowerBound
            guard s.peek == UInt8(ascii: "[") else { return nil }
            return try s.array(depth: 1, collect: true)
        }
    }

    /// A value of a flat object: a string, an integer, `true`, `false` or `null`.
    public enum Value: Equatable, Sendable {
        /// A string, escapes decoded.
        case string(String)
        /// `-?(0|[1-9][0-9]*)`, at most 18 digits, no fraction or exponent.
        case integer(Int64)
        /// `true` or `false`.
        case bool(Bool)
        /// `null`.
        case null

        /// The value as JSON text (strings as `JSONText.asciiString` writes them).
        public var json: String {
            switch self {
            case .string(let s): return JSONText.asciiString(s)
            case .integer(let v): return String(v)
            case .bool(let b): return b ? "true" : "false"
            case .null: return "null"
            }
        }
    }

    /// The members of one JSON object, each value read as a flat value (nil: not a string,
    /// an integer of at most 18 digits, `true`, `false` or `null`); nil when `bytes` is not
    /// exactly one JSON object (RFC 8259, as `objectMembers` checks it).
    /// With `int64`, an integer is any of Int64's (up to 19 digits), as a settlement record's
    /// amounts are read (an amount too large is refused for what it says, not for its form).
    public static func flatMembers(_ bytes: [UInt8], int64: Bool = false) -> [(key: String, value: Value?)]? {
        guard let spans = try? objectMembers(bytes) else { return nil }
        return bytes.withUnsafeBufferPointer { b in
            var s = Scanner(b: b)
            return spans.map { ($0.key, s.flatValue($0.value, int64: int64)) }
        }
    }

    /// A JSON array of objects, each object's members read as `flatMembers(_:int64:)` reads
    /// them (integers over Int64's whole range); nil when `bytes` is not exactly one array of
    /// objects.
    public static func flatObjects(_ bytes: [UInt8]) -> [[(key: String, value: Value?)]]? {
        bytes.withUnsafeBufferPointer { b -> [[(key: String, value: Value?)]]? in
            var s = Scanner(b: b)
            s.skipWhitespace()
            guard s.peek == UInt8(ascii: "["), let elements = try? s.array(depth: 0, collect: true) else { return nil }
            s.skipWhitespace()
            guard s.i == b.count else { return nil }
            var out: [[(key: String, value: Value?)]] = []
            for element in elements {
                s.i = element.lowerBound
                guard s.peek == UInt8(ascii: "{"), let spans = try? s.object(depth: 1, collect: true) else { return nil }
                out.append(spans.map { ($0.key, s.flatValue($0.value, int64: true)) })
            }
            return out
        }
    }

    /// A JSON object whose values are strings, integers, `true`, `false` or `null` only, read
    /// strictly: nil for a duplicate key, any other value (a number with a fraction or exponent,
    /// an array, an object), a lone surrogate escape, or anything that is not one JSON object.
    public static func flatObject(_ bytes: [UInt8]) -> [String: Value]? {
        bytes.withUnsafeBufferPointer { b -> [String: Value]? in
            var s = Scanner(b: b)
            s.skipWhitespace()
            guard s.peek == UInt8(ascii: "{"), let spans = try? s.object(depth: 0, collect: true) else { return nil }
            s.skipWhitespace()
            guard s.i == b.count else { return nil }
            var out: [String: Value] = [:]
            for (key, range) in spans {
                guard out[key] == nil, let v = s.flatValue(range) else { return nil }
                out[key] = v
            }
            return out
        }
    }

    struct Scanner {
        let b: UnsafeBufferPointer<UInt8>
        var i = 0

        var peek: UInt8? { i < b.count ? b[i] : nil }

        mutating func skipWhitespace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        func error(_ what: String) -> SyntaxError { SyntaxError(offset: i, what: what) }

        mutating func expect(_ c: UInt8) throws {
            guard i < b.count, b[i] == c else { throw error("expected '\(Character(Unicode.Scalar(c)))'") }
            i += 1
        }

        /// Checks one value; returns its range.
        mutating func value(depth: Int) throws -> Range<Int> {
            let start = i
            guard let c = peek else { throw error("unexpected end") }
            switch c {
            case UInt8(ascii: "{"): _ = try object(depth: depth + 1, collect: false)
            case UInt8(ascii: "["): _ = try array(depth: depth + 1, collect: false)
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw error("unexpected character")
            }
            return start..<i
        }

        mutating func object(depth: Int, collect: Bool) throws -> [(key: String, value: Range<Int>)] {
            guard depth <= StrictJSON.maxDepth else { throw error("nested too deep") }
            try expect(UInt8(ascii: "{"))
            var members: [(key: String, value: Range<Int>)] = []
            skipWhitespace()
            if peek == UInt8(ascii: "}") { i += 1; return members }
            while true {
                skipWhitespace()
                let keyAt = i
                let key = try string()
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let v = try value(depth: depth)
                if collect {
                    guard let k = decodeString(key) else { throw SyntaxError(offset: keyAt, what: "a lone surrogate in a key") }
                    members.append((k, v))
                }
                skipWhitespace()
                guard let c = peek else { throw error("unexpected end in object") }
                i += 1
                if c == UInt8(ascii: "}") { return members }
                guard c == UInt8(ascii: ",") else { i -= 1; throw error("expected ',' or '}'") }
            }
        }

        mutating func array(depth: Int, collect: Bool) throws -> [Range<Int>] {
            guard depth <= StrictJSON.maxDepth else { throw error("nested too deep") }
            try expect(UInt8(ascii: "["))
            var elements: [Range<Int>] = []
            skipWhitespace()
            if peek == UInt8(ascii: "]") { i += 1; return elements }
            while true {
                skipWhitespace()
                let v = try value(depth: depth)
                if collect { elements.append(v) }
                skipWhitespace()
                guard let c = peek else { throw error("unexpected end in array") }
                i += 1
                if c == UInt8(ascii: "]") { return elements }
                guard c == UInt8(ascii: ",") else { i -= 1; throw error("expected ',' or ']'") }
            }
        }

        /// Checks a string; returns the range inside the quotes and whether it has escapes.
        mutating func string() throws -> (Range<Int>, Bool) {
            try expect(UInt8(ascii: "\""))
            let start = i
            var escaped = false
            while true {
                guard i < b.count else { throw error("unterminated string") }
                let c = b[i]
                if c == UInt8(ascii: "\"") { i += 1; return (start..<(i - 1), escaped) }
                if c < 0x20 { throw error("control character in string") }
                if c == UInt8(ascii: "\\") {
                    escaped = true
                    i += 1
                    guard let e = peek else { throw error("unterminated escape") }
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        i += 1
                    case UInt8(ascii: "u"):
                        i += 1
                        for _ in 0..<4 {
                            guard let h = peek, (h >= 0x30 && h <= 0x39) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66) else {
                                throw error("bad \\u escape")
                            }
                            i += 1
                        }
                    default: throw error("bad escape")
                    }
                    continue
                }
                if c >= 0x80 {
                    try utf8Sequence()
                    continue
                }
                i += 1
            }
        }

        /// One well-formed multi-byte UTF-8 sequence (RFC 3629).
        mutating func utf8Sequence() throws {
            let c = b[i]
            var need: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: throw error("invalid UTF-8")
            }
            i += 1
            while need > 0 {
                guard let n = peek, n >= lo, n <= hi else { throw error("invalid UTF-8") }
                lo = 0x80; hi = 0xBF
                i += 1
                need -= 1
            }
        }

        mutating func number() throws {
            if peek == UInt8(ascii: "-") { i += 1 }
            guard let d = peek, d >= 0x30, d <= 0x39 else { throw error("bad number") }
            if d == 0x30 { i += 1 } else { while let x = peek, x >= 0x30, x <= 0x39 { i += 1 } }
            if peek == UInt8(ascii: ".") {
                i += 1
                guard let x = peek, x >= 0x30, x <= 0x39 else { throw error("bad fraction") }
                while let x = peek, x >= 0x30, x <= 0x39 { i += 1 }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                i += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
                guard let x = peek, x >= 0x30, x <= 0x39 else { throw error("bad exponent") }
                while let x = peek, x >= 0x30, x <= 0x39 { i += 1 }
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let n = word.utf8CodeUnitCount
            guard i + n <= b.count else { throw error("bad literal") }
            for k in 0..<n where b[i + k] != word.utf8Start[k] { throw error("bad literal") }
            i += n
        }

        /// The flat value (a string, an integer of at most 18 digits, a literal) at `range`,
        /// already checked; nil for any other value.
        mutating func flatValue(_ range: Range<Int>, int64: Bool = false) -> StrictJSON.Value? {
            i = range.lowerBound
            switch b[i] {
            case UInt8(ascii: "\""): return (try? string()).flatMap(decodeString).map(StrictJSON.Value.string)
            case UInt8(ascii: "t"): return .bool(true)
            case UInt8(ascii: "f"): return .bool(false)
            case UInt8(ascii: "n"): return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                let negative = b[i] == UInt8(ascii: "-")
                let digits = UnsafeBufferPointer(rebasing: b[(negative ? i + 1 : i)..<range.upperBound])
                guard digits.count <= (int64 ? 19 : 18), digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
                let magnitude = digits.reduce(UInt64(0)) { $0 * 10 + UInt64($1 - 0x30) }   // < 10^19 < UInt64.max
                if negative {
                    guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
                    return .integer(Int64(bitPattern: 0 &- magnitude))
                }
                guard magnitude <= UInt64(Int64.max) else { return nil }
                return .integer(Int64(magnitude))
            default: return nil
            }
        }

        /// The text of the string at `key` (inside its quotes, already checked), escapes decoded;
        /// nil for an escape that spells a lone surrogate.
        func decodeString(_ key: (Range<Int>, Bool)) -> String? {
            let raw = UnsafeBufferPointer(rebasing: b[key.0])
            guard key.1 else { return String(decoding: raw, as: UTF8.self) }
            var units: [UInt16] = []
            var run: [UInt8] = []
            func flush() { if !run.isEmpty { units += Array(String(decoding: run, as: UTF8.self).utf16); run = [] } }
            var i = 0
            while i < raw.count {
                let c = raw[i]
                guard c == UInt8(ascii: "\\") else { run.append(c); i += 1; continue }
                flush()
                let e = raw[i + 1]
                i += 2
                switch e {
                case UInt8(ascii: "b"): units.append(0x08)
                case UInt8(ascii: "f"): units.append(0x0C)
                case UInt8(ascii: "n"): units.append(0x0A)
                case UInt8(ascii: "r"): units.append(0x0D)
                case UInt8(ascii: "t"): units.append(0x09)
                case UInt8(ascii: "u"):
                    units.append(UInt16(String(decoding: UnsafeBufferPointer(rebasing: raw[i..<(i + 4)]), as: UTF8.self), radix: 16)!)
                    i += 4
                default: units.append(UInt16(e))     // \" \\ \/
                }
            }
            flush()
            let s = String(decoding: units, as: UTF16.self)
            return s.utf16.elementsEqual(units) ? s : nil      // a lone surrogate would have become U+FFFD
        }
    }
}

/// JSON text written by hand, so that key order and bytes are fixed.
public enum JSONText {
    /// Appends `s` as a JSON string literal: quotes, backslash and control characters escaped,
    /// everything else left as its UTF-8 bytes (what the kiosk's batches and the hub's answers use).
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                out.append(contentsOf: #"\u00"#.utf8)
                Hex.append(c, to: &out)
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A JSON string literal: quotes, backslash and control characters escaped, everything
    /// outside ASCII as `\uXXXX` (UTF-16), as Python's `json.dumps` does by default (the
    /// receipt's JWS header and payload).
    public static func asciiString(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
            default:
                out += "\\u" + Hex.encode([UInt8(unit >> 8), UInt8(unit & 0xFF)])
            }
        }
        return out + "\""
    }
}
