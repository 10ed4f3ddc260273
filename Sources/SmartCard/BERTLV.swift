/// BER-TLV as ISO/IEC 7816-4 uses it: tags of 1 to 3 bytes, definite lengths of
/// 1 to 4 bytes (`81`, `82`, `83` forms), `00`/`FF` padding between and after objects.
/// Malformed input throws a `TLVError`; it never traps.
public struct TLV: Hashable, Sendable {
    /// The tag as an integer of its bytes (`0x70`, `0xDF21`, `0x9F08`).
    public let tag: UInt32
    /// The value bytes (for a constructed object, its children encoded).
    public let value: [UInt8]

    /// An object of a tag (as an integer of its bytes) and a value.
    public init(tag: UInt32, value: [UInt8]) { self.tag = tag; self.value = value }

    /// Whether the tag's first byte has the constructed bit.
    public var isConstructed: Bool { tagBytes[0] & 0x20 != 0 }

    /// The tag's 1 to 3 bytes as encoded.
    public var tagBytes: [UInt8] {
        if tag > 0xFFFF { return [UInt8(tag >> 16), UInt8(tag >> 8 & 0xFF), UInt8(tag & 0xFF)] }
        if tag > 0xFF { return [UInt8(tag >> 8), UInt8(tag & 0xFF)] }
        return [UInt8(tag)]
    }

    /// Tag, length and value.
    public var encoded: [UInt8] { tagBytes + TLV.encodeLength(value.count) + value }

    /// A constructed object holding `children` in order.
    public static func constructed(_ tag: UInt32, _ children: [TLV]) -> TLV {
        TLV(tag: tag, value: children.flatMap(\.encoded))
    }

    /// The BER length of `n` bytes, in the shortest definite form (`81`, `82`, `83` above 127).
    /// A negative length, or one that needs more than 3 bytes, is a programming error (it traps).
    public static func encodeLength(_ n: Int) -> [UInt8] {
        precondition(n >= 0 && n <= 0xFF_FFFF, "TLV length out of range")
        if n < 0x80 { return [UInt8(n)] }
        if n <= 0xFF { return [0x81, UInt8(n)] }
        if n <= 0xFFFF { return [0x82, UInt8(n >> 8), UInt8(n & 0xFF)] }
        return [0x83, UInt8(n >> 16), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
    }

    /// The children of a constructed object.
    public func children() throws -> [TLV] {
        guard isConstructed else { throw TLVError.notConstructed(tag: tag) }
        return try TLV.parseAll(value)
    }

    /// Parses one object at the start of `bytes`; returns it and the bytes it took.
    public static func parse(_ bytes: [UInt8], from start: Int = 0) throws -> (TLV, Int) {
        var i = start
        func next() throws -> UInt8 {
            guard i < bytes.count else { throw TLVError.truncated(offset: i) }
            defer { i += 1 }
            return bytes[i]
        }
        let first = try next()
        var tag = UInt32(first)
        if first & 0x1F == 0x1F {
            var count = 1
            while true {
                let b = try next()
                count += 1
                guard count <= 3 else { throw TLVError.tagTooLong(offset: start) }
                tag = tag << 8 | UInt32(b)
                if b & 0x80 == 0 { break }
            }
        }
        let l0 = try next()
        var length: Int
        switch l0 {
        case 0x00...0x7F: length = Int(l0)
        case 0x80: throw TLVError.indefiniteLength(offset: i - 1)
        case 0x81...0x83:
            length = 0
            for _ in 0..<Int(l0 - 0x80) { length = length << 8 | Int(try next()) }
        default: throw TLVError.invalidLength(offset: i - 1)
        }
        guard length <= bytes.count - i else { throw TLVError.truncated(offset: i) }
        let value = Array(bytes[i..<i + length])
        return (TLV(tag: tag, value: value), i + length - start)
    }

    /// Parses a sequence of objects, skipping `00`/`FF` padding between and after them.
    public static func parseAll(_ bytes: [UInt8]) throws -> [TLV] {
        var out: [TLV] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x00 || bytes[i] == 0xFF { i += 1; continue }
            let (tlv, used) = try parse(bytes, from: i)
            out.append(tlv)
            i += used
        }
        return out
    }

    /// Parses a file that holds exactly one object, with only `00`/`FF` padding after it.
    /// Returns the object and its exact encoded bytes (padding excluded).
    public static func parseSingle(_ bytes: [UInt8]) throws -> (TLV, [UInt8]) {
        guard !bytes.isEmpty else { throw TLVError.empty }
        let (tlv, used) = try parse(bytes)
        for (k, b) in bytes[used...].enumerated() where b != 0x00 && b != 0xFF {
            throw TLVError.trailingData(offset: used + k)
        }
        return (tlv, Array(bytes[0..<used]))
    }
}

/// Why bytes are not BER-TLV as `TLV` accepts it; offsets count bytes from the start of the input.
public enum TLVError: Error, Equatable, Sendable {
    /// No bytes at all where one object was expected.
    case empty
    /// The input ends inside a tag, a length or a value.
    case truncated(offset: Int)
    /// A tag of more than 3 bytes.
    case tagTooLong(offset: Int)
    /// The indefinite length form `80`.
    case indefiniteLength(offset: Int)
    /// A length byte `84` or above.
    case invalidLength(offset: Int)
    /// Bytes other than `00`/`FF` padding after the one object of a file.
    case trailingData(offset: Int)
    /// Children asked of a primitive object.
    case notConstructed(tag: UInt32)
}

extension Array where Element == TLV {
    /// The first child with this tag.
    public func first(tag: UInt32) -> TLV? { first { $0.tag == tag } }
}
