import Foundation

/// A strict RFC 8259 syntax check that also says where each value lies in the bytes, so
/// the hub can keep every record's exact JSON text (and hash exactly what the kiosk sent).
struct JSONSpans {
    struct SyntaxError: Error, CustomStringConvertible {
        var offset: Int
        var what: String
        var description: String { "invalid JSON at byte \(offset): \(what)" }
    }

    /// Deepest nesting accepted (a bound on the recursion).
    static let maxDepth = 64

    /// The members of a top-level object: each key (decoded) and its value's byte range.
    static func objectMembers(_ bytes: [UInt8]) throws -> [(key: String, value: Range<Int>)] {
        try bytes.withUnsafeBufferPointer { b in
            var s = Scanner(b: b)
            s.skipWhitespace()
            let members = try s.object(depth: 0, collect: true)
            s.skipWhitespace()
            guard s.i == b.count else { throw SyntaxError(offset: s.i, what: "text after the JSON value") }
            return members
        }
    }

    /// The byte ranges of the elements of the array at `range` (already checked by `objectMembers`).
    static func arrayElements(_ bytes: [UInt8], in range: Range<Int>) throws -> [Range<Int>]? {
        try bytes.withUnsafeBufferPointer { b in
            var s = Scanner(b: b)
            s.i = range.lowerBound
            guard s.peek == UInt8(ascii: "[") else { return nil }
            return try s.array(depth: 1, collect: true)
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
            guard depth <= JSONSpans.maxDepth else { throw error("nested too deep") }
            try expect(UInt8(ascii: "{"))
            var members: [(key: String, value: Range<Int>)] = []
            skipWhitespace()
            if peek == UInt8(ascii: "}") { i += 1; return members }
            while true {
                skipWhitespace()
                let key = try string()
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let v = try value(depth: depth)
                if collect { members.append((decodeKey(key), v)) }
                skipWhitespace()
                guard let c = peek else { throw error("unexpected end in object") }
                i += 1
                if c == UInt8(ascii: "}") { return members }
                guard c == UInt8(ascii: ",") else { i -= 1; throw error("expected ',' or '}'") }
            }
        }

        mutating func array(depth: Int, collect: Bool) throws -> [Range<Int>] {
            guard depth <= JSONSpans.maxDepth else { throw error("nested too deep") }
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

        func decodeKey(_ key: (Range<Int>, Bool)) -> String {
            let raw = String(decoding: UnsafeBufferPointer(rebasing: b[key.0]), as: UTF8.self)
            guard key.1 else { return raw }
            let quoted = Data(("\"" + raw + "\"").utf8)
            return (try? JSONSerialization.jsonObject(with: quoted, options: [.fragmentsAllowed]) as? String) ?? raw
        }
    }
}
