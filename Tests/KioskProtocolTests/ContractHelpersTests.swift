import Crypto
import Foundation
import KioskProtocol
import Testing

/// The contract's one-of-each helpers (issue 22): one RFC 3339, one hex, one line reader,
/// one JSON scanner, one spelling of each signing message.
@Suite struct ContractHelpersTests {
    // MARK: - RFC 3339

    @Test("Timestamp reads exactly YYYY-MM-DDTHH:MM:SSZ and nothing else")
    func timestampIsStrict() throws {
        let t = try #require(Timestamp.date("2026-11-22T03:00:01Z"))
        #expect(t.timeIntervalSince1970 == 1_795_316_401)
        #expect(Timestamp.string(t) == "2026-11-22T03:00:01Z")
        #expect(Timestamp.date("2024-02-29T23:59:59Z") != nil)          // a leap day
        for refused in ["2026-11-22T03:00:60Z",      // second 60: the hub took it before issue 22
                        "2026-11-22T24:00:00Z", "2026-02-29T00:00:00Z", "2026-11-31T00:00:00Z",
                        "2026-11-22T03:00:01.5Z",    // a fraction
                        "2026-11-22T11:00:01+08:00", "2026-11-22T03:00:01+00:00",
                        "2026-11-22t03:00:01Z", "2026-11-22T03:00:01z", "2026-11-22 03:00:01Z",
                        "2026-11-22T03:00:01", "2026-11-22T03:00:01Z ", " 2026-11-22T03:00:01Z",
                        "２026-11-22T03:00:01Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", ""] {
            #expect(Timestamp.date(refused) == nil, "took \(refused)")
        }
    }

    @Test("Timestamp.string and Timestamp.date are each other's inverse over the years that matter")
    func timestampRoundTrips() throws {
        var g = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let seconds = Int64.random(in: -2_000_000_000...7_000_000_000, using: &g)
            let d = Date(timeIntervalSince1970: Double(seconds))
            let text = Timestamp.string(d)
            #expect(Timestamp.date(text) == d, "\(text)")
        }
        let withMillis = Date(timeIntervalSince1970: 1_795_316_401.25)
        #expect(Timestamp.string(withMillis) == "2026-11-22T03:00:01Z")
        #expect(Timestamp.string(withMillis, fractional: true) == "2026-11-22T03:00:01.250Z")
    }

    @Test("a hub's received_at is read leniently and rounded up to the second")
    func receivedAtNormalises() {
        #expect(ReceivedAt.normalise("2026-11-22T03:00:01Z") == "2026-11-22T03:00:01Z")
        #expect(ReceivedAt.normalise("2026-11-22T03:00:01.001Z") == "2026-11-22T03:00:02Z")
        #expect(ReceivedAt.normalise("2026-11-22T11:00:01+08:00") == "2026-11-22T03:00:01Z")
        #expect(ReceivedAt.normalise("yesterday") == nil)
    }

    // MARK: - hex

    @Test("Hex writes two digits a byte and reads only what it was told to")
    func hex() {
        let bytes: [UInt8] = [0x00, 0x0f, 0xa5, 0xff]
        #expect(Hex.encode(bytes) == "000fa5ff")
        #expect(Hex.encode(bytes, uppercase: true) == "000FA5FF")
        #expect(Hex.encode([UInt8]()) == "")
        #expect(Hex.decode("000fa5ff") == bytes)
        #expect(Hex.decode("000FA5FF") == nil)                       // the specs' form is lowercase
        #expect(Hex.decode("000FA5FF", .lenient) == bytes)
        #expect(Hex.decode("00 0f\na5 FF", .lenient) == bytes)
        #expect(Hex.decode("00 0f") == nil)
        #expect(Hex.decode("abc") == nil && Hex.decode("abc", .lenient) == nil)
        #expect(Hex.decode("0g") == nil && Hex.decode("0g", .lenient) == nil)
        var g = SystemRandomNumberGenerator()
        for n in 0..<64 {
            let r = (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
            #expect(Hex.decode(Hex.encode(r)) == r)
            #expect(Hex.encode(r) == r.map { String(format: "%02x", $0) }.joined())
        }
    }

    // MARK: - line reader

    @Test("LineReader joins lines across chunks, bounds each line, and reads bytes in memory the same way")
    func lineReader() throws {
        let text = Array("abc\n0123456789\n\nxyz".utf8)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lines-\(UUID().uuidString).txt")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(text).write(to: file)
        var fromFile: [String] = [], fromMemory: [String] = []
        try LineReader.each(file, maxLine: 10) { fromFile.append(String(decoding: $0, as: UTF8.self)) }
        try LineReader.each(text, maxLine: 10) { fromMemory.append(String(decoding: $0, as: UTF8.self)) }
        #expect(fromFile == ["abc", "0123456789", "", "xyz"])
        #expect(fromMemory == fromFile)
        #expect(throws: LineReader.TooLong(line: 2, maxLine: 9)) { try LineReader.each(text, maxLine: 9) { _ in } }
    }

    @Test("FirstLine hands over the first line once, whatever the chunks, and refuses an endless one")
    func firstLine() throws {
        var f = FirstLine(maxLine: 8)
        #expect(try f.feed(Array("abc".utf8)) == nil)
        #expect(try f.feed(Array("de\nrest".utf8)) == Array("abcde".utf8))
        #expect(try f.feed(Array("more\n".utf8)) == nil)
        #expect(!f.isOpen)

        var long = FirstLine(maxLine: 8)
        #expect(try long.feed(Array("12345".utf8)) == nil)
        #expect(throws: LineReader.TooLong(line: 1, maxLine: 8)) { try long.feed(Array("6789\n".utf8)) }

        var exact = FirstLine(maxLine: 8)
        #expect(try exact.feed(Array("12345678\n".utf8)) == Array("12345678".utf8))

        var unfinished = FirstLine()
        _ = try unfinished.feed(Array("{}".utf8))
        #expect(unfinished.finish() == Array("{}".utf8))
    }

    // MARK: - JSON

    @Test("StrictJSON keeps each member's exact bytes and refuses what RFC 8259 refuses")
    func strictJSON() throws {
        let text = Array(#" {"a":1, "b" : [1,{"c":"\u00e9"}], "\u0064":"x"} "#.utf8)
        let members = try StrictJSON.objectMembers(text)
        #expect(members.map(\.key) == ["a", "b", "d"])
        #expect(String(decoding: text[members[1].value], as: UTF8.self) == #"[1,{"c":"\u00e9"}]"#)
        #expect(try StrictJSON.arrayElements(text, in: members[1].value)?.count == 2)
        #expect(try StrictJSON.arrayElements(text, in: members[0].value) == nil)
        for bad in [#"{"a":01}"#, #"{"a":1,}"#, #"{"a":"\x"}"#, "{\"a\":\"\u{1}\"}", #"{"a":1} x"#, #"[1]"#,
                    #"{"\ud800":1}"#, #"{"a":.5}"#, #"{"a":tru}"#] {
            #expect(throws: StrictJSON.SyntaxError.self, "took \(bad)") { try StrictJSON.objectMembers(Array(bad.utf8)) }
        }
        #expect(throws: StrictJSON.SyntaxError.self) { try StrictJSON.objectMembers([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D]) }
        let deep = String(repeating: "[", count: 70) + String(repeating: "]", count: 70)
        #expect(throws: StrictJSON.SyntaxError.self) { try StrictJSON.objectMembers(Array(#"{"a":\#(deep)}"#.utf8)) }
    }

    @Test("StrictJSON.flatObject reads strings, integers and literals only, no key twice")
    func flatObject() {
        #expect(StrictJSON.flatObject(Array(#"{"a":true,"b":null,"c":-5,"d":"\n\u00e9"}"#.utf8))
                == ["a": .bool(true), "b": .null, "c": .integer(-5), "d": .string("\né")])
        #expect(StrictJSON.flatObject(Array(#"{"a":1,"a":2}"#.utf8)) == nil)
        #expect(StrictJSON.flatObject(Array(#"{"a":1.5}"#.utf8)) == nil)
        #expect(StrictJSON.flatObject(Array(#"{"a":1e3}"#.utf8)) == nil)
        #expect(StrictJSON.flatObject(Array(#"{"a":[1]}"#.utf8)) == nil)
        #expect(StrictJSON.flatObject(Array(#"{"a":1234567890123456789}"#.utf8)) == nil)   // 19 digits
        #expect(StrictJSON.flatObject(Array(#"{"a":"\ud83d"}"#.utf8)) == nil)              // a lone surrogate
        #expect(StrictJSON.flatObject(Array(#"{"a":"\ud83d\ude00"}"#.utf8)) == ["a": .string("😀")])
    }

    @Test("JSONText writes strings that StrictJSON reads back")
    func jsonTextRoundTrips() {
        for s in ["plain", "q\"b\\s", "ctl\u{1}\u{1f}\n\t", "中文 é 😀", ""] {
            var out = Array(#"{"k":"#.utf8)
            JSONText.appendString(s, to: &out)
            out.append(UInt8(ascii: "}"))
            #expect(StrictJSON.flatObject(out) == ["k": .string(s)])
            #expect(StrictJSON.flatObject(Array("{\"k\":\(JSONText.asciiString(s))}".utf8)) == ["k": .string(s)])
            #expect(JSONText.asciiString(s).utf8.allSatisfy { $0 < 0x80 })
        }
    }

    // MARK: - signing messages

    @Test("each signing message is the spec's bytes, and a signature over it verifies for both sides")
    func signingMessages() throws {
        let number = "3307820000000058"
        #expect(SigningMessage.usage(cardNumber: number, signedBytes: [1, 2]) == Array("USAGE-V2\(number)".utf8) + [1, 2])
        #expect(SigningMessage.usageAcknowledgement(cardNumber: number, sequence: 0x0102_0304, challenge: [9])
                == Array("USAGE-ACK-V2\(number)".utf8) + [1, 2, 3, 4, 9])
        #expect(SigningMessage.cardAuthentication(cardNumber: number, challenge: [7], usageDigest: [8])
                == Array("CARD-AUTH-V2\(number)".utf8) + [7, 8])
        #expect(SigningMessage.sync(method: "GET", pathAndQuery: "/v1/sync/manifest?region=330782", date: "2026-11-22T03:00:00Z")
                == Array("SYNC-V1\nGET\n/v1/sync/manifest?region=330782\n2026-11-22T03:00:00Z".utf8))
        let key = Curve25519.Signing.PrivateKey()
        let message = SigningMessage.sync(method: "POST", pathAndQuery: "/v1/x", date: "2026-11-22T03:00:00Z")
        #expect(key.publicKey.isValidSignature(try key.signature(for: message), for: message))
    }
}
