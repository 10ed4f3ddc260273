import Foundation
import KioskProtocol
import TestVectors
import Testing

/// Issue 24 item 4: records are written by `CompactJSON` instead of `JSONEncoder`. A record's
/// bytes are what the hub stores and the receipt desk prints from: they must not change by
/// one byte. `JSONEncoder` with the same options is the oracle.
@Suite struct CompactJSONTests {
    static func oracle<T: Encodable>(_ value: T) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return [UInt8](try e.encode(value))
    }

    /// Every ASCII character, the escapes, Chinese, a character outside the BMP, the line
    /// separators JavaScript cares about, DEL.
    static let alphabet: [Character] = (0..<128).map { Character(Unicode.Scalar(UInt8($0))) }
        + ["价", "惠", "民", "😀", "\u{2028}", "\u{2029}", "\u{FEFF}", "é", "\u{0301}"]

    static func text(_ rng: inout SplitMix64) -> String {
        String((0..<rng.below(12)).map { _ in alphabet[rng.below(alphabet.count)] })
    }

    static func int(_ rng: inout SplitMix64) -> Int64 {
        [Int64.min, Int64.max, 0, -1, Int64(rng.below(1_000_000)), Int64(bitPattern: rng.next())][rng.below(6)]
    }

    static func record(_ rng: inout SplitMix64) -> SettlementRecord {
        func t() -> String { text(&rng) }
        func i() -> Int64 { int(&rng) }
        func maybe() -> String? { rng.below(2) == 0 ? nil : t() }
        let content: SettlementRecord.Content
        switch rng.below(4) {
        case 0:
            content = .medicalSubsidy(.init(cardNumber: t(), personRef: t(), program: t(), period: t(), billReference: t(), billFen: i(),
                                            subsidyFen: i(), patientPaysFen: i(), usedBeforeFen: i(), usedAfterFen: i(), cardSequence: i(),
                                            cardChallenge: t(), cardAck: t(), institution: t()))
        case 1: content = .subsidyReversal(.init(reverses: t(), amountFen: i(), reason: t(), operator: t()))
        case 2:
            content = .legalAidApplication(.init(cardNumber: t(), personRef: t(), program: t(), matter: t(), priority: rng.below(2) == 0,
                                                 contactPhone: maybe(), cardUsageDigest: maybe(), cardAuth: maybe()))
        default: content = .alert(.init(code: t(), cardNumber: maybe(), detail: t(), operator: maybe()))
        }
        return SettlementRecord(recordID: t(), seq: i(), createdAt: t(), snapshotID: maybe(), content: content)
    }

    @Test("5,000 random records of every kind: the same bytes as JSONEncoder")
    func recordsAreByteForByteTheOracles() throws {
        var rng = SplitMix64(seed: 24_004)
        for _ in 0..<5_000 {
            let r = Self.record(&rng)
            let mine = try CompactJSON.encode(r)
            #expect(mine == (try Self.oracle(r)), "\(String(decoding: mine, as: UTF8.self))")
            #expect(try r.json() == String(decoding: mine, as: UTF8.self))
            #expect(try SettlementRecord(json: mine) == r)
        }
    }

    @Test("each character alone, escaped as JSONEncoder escapes it")
    func everyCharacter() throws {
        for c in Self.alphabet {
            #expect(try CompactJSON.encode([String(c)]) == (try Self.oracle([String(c)])), "\(c.unicodeScalars.map { $0.value })")
        }
    }

    struct Nested: Encodable {
        var list: [[Int64]]
        var flags: [Bool?]
        var inner: [String: Int]
        var allocations: [Allocation]
        var skipped: String?
        enum CodingKeys: String, CodingKey { case list, flags, inner, allocations, skipped, zeta = "Zeta", under = "_u" }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(list, forKey: .list)
            try c.encode(flags, forKey: .flags)
            try c.encode(inner, forKey: .inner)
            try c.encode(allocations, forKey: .allocations)
            try c.encodeIfPresent(skipped, forKey: .skipped)
            try c.encode("first", forKey: .zeta)
            try c.encode("again", forKey: .zeta)   // given twice: the last one stays
            var u = c.nestedUnkeyedContainer(forKey: .under)
            try u.encode(UInt64.max)
            var n = u.nestedContainer(keyedBy: CodingKeys.self)
            try n.encodeNil(forKey: .list)
        }
    }

    @Test("arrays, nested objects, optionals, upper-case and underscore keys, a key given twice")
    func shapes() throws {
        let v = Nested(list: [[], [1, -2]], flags: [true, nil, false], inner: ["b": 2, "a": 1, "B": 3, "价": 4],
                       allocations: [Allocation(program: "HM", subsidyFen: 5, usedBeforeFen: 0, usedAfterFen: 5)], skipped: nil)
        #expect(try CompactJSON.encode(v) == (try Self.oracle(v)))
        #expect(try CompactJSON.string([Int64]()) == "[]")
    }

    @Test("a floating-point value is refused, not written in some other way")
    func noFloats() {
        #expect(throws: EncodingError.self) { try CompactJSON.encode(["x": 1.5]) }
        #expect(throws: EncodingError.self) { try CompactJSON.encode([Float(1)]) }
        // JSONEncoder writes these its own way (base64, text, a number): refused, not written another way.
        #expect(throws: EncodingError.self) { try CompactJSON.encode(["d": Data([1])]) }
        #expect(throws: EncodingError.self) { try CompactJSON.encode([URL(string: "https://example.org/")!]) }
        #expect(throws: EncodingError.self) { try CompactJSON.encode([Decimal(1)]) }
        #expect(throws: EncodingError.self) { try CompactJSON.encode([Date()]) }
    }
}
