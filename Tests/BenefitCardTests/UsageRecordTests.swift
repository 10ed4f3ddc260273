import Crypto
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard
@testable import BenefitCard

@Suite struct UsageRecordTests {
    static var stored: [UInt8] { get throws { try Fx.hex(Vectors.description(Fx.card17).files.usage) } }

    @Test func vectorRecordParsesAndVerifies() throws {
        let r = try UsageRecord(fileBytes: Self.stored)
        #expect(r.sequence == 3)
        let body = try #require(r.body)
        #expect(body.period == "2026" && body.terminalID == "KSK-TEST-0002" && body.writtenAt == "2026-10-08T01:15:00Z")
        #expect(body.entries == [UsageRecord.Entry(program: "HM-SUBSIDY", usedFen: 12000)])
        #expect(body.challenge.hexString == "BDAF4E3299608514F3C7D4808C941FCF")
        #expect(r.object == (try Self.stored))
        #expect(r.writtenAtDate == (try Fx.date("2026-10-08T01:15:00Z")))
        #expect(r.used(program: "HM-SUBSIDY", period: "2026") == 12000)
        #expect(r.used(program: "HM-SUBSIDY", period: "2027") == 0)
        let keys = Vectors.trust.deviceKeys
        #expect(r.trust(cardNumber: Fx.card17, deviceKeys: keys) == .trusted(deviceID: "KSK-TEST-0002"))
        #expect(r.trust(cardNumber: "3307820000000058", deviceKeys: keys) == .untrusted(.badSignature))   // another card's record
        #expect(r.trust(cardNumber: Fx.card17, deviceKeys: [:]) == .untrusted(.unknownDevice("KSK-TEST-0002")))
        #expect(r.trust(cardNumber: Fx.card17, deviceKeys: ["KSK-TEST-0002": Vectors.device("KSK-TEST-0001").public]) == .untrusted(.badSignature))
    }

    @Test func digestIsOfTheObjectWithoutPadding() throws {
        let v = try #require(Vectors.cards.first { $0.card_number == Fx.card17 })
        let padded = try Self.stored + [0, 0, 0, 0xFF]
        let r = try UsageRecord(fileBytes: padded)
        #expect(r.digest.map { String(format: "%02x", $0) }.joined() == v.internal_authenticate["usage_sha256"])
        #expect(r.object == (try Self.stored))
        let empty = try UsageRecord(fileBytes: [0x72, 0x00, 0x00, 0xFF])
        #expect(empty.isEmpty && empty.sequence == 0 && empty.object == [0x72, 0x00])
        #expect(empty.digest == Array(SHA256.hash(data: [0x72, 0x00])))
        #expect(empty.trust(cardNumber: Fx.card17, deviceKeys: [:]) == .empty && empty.writtenAtDate == nil)
    }

    /// The README's bill of 10000 on …0017: byte for byte the vectors' record (Ed25519 is deterministic).
    @Test func encodeReproducesTheVectorRecord() throws {
        let w = Vectors.writeVectors.write
        let object = try UsageRecord.encode(cardNumber: w.card_number, period: "2026", sequence: 4, terminalID: w.device_id,
                                            writtenAt: Fx.date(w.now), entries: [.init(program: "HM-SUBSIDY", usedFen: 30000)],
                                            challenge: Fx.hex(w.challenge), signer: Vectors.device(w.device_id).private)
        #expect(object.hexString == w.usage_object)
        let r = try UsageRecord(fileBytes: object)
        let body = try #require(r.body)
        #expect(UsageRecord.signedMessage(cardNumber: w.card_number, signedBytes: body.signedBytes).hexString == w.signed_message)
        #expect(r.trust(cardNumber: w.card_number, deviceKeys: Vectors.trust.deviceKeys) == .trusted(deviceID: w.device_id))
        var tampered = object
        tampered[tampered.count - 88] ^= 0x01   // a byte of the entry's amount
        #expect(try UsageRecord(fileBytes: tampered).trust(cardNumber: w.card_number, deviceKeys: Vectors.trust.deviceKeys) == .untrusted(.badSignature))
        #expect(UsageRecord(sequence: r.sequence, body: r.body).object == object)
    }

    @Test func encodeThrowsOnEveryBadFieldAndNeverTraps() throws {
        let signer = Vectors.device("KSK-TEST-0001").private
        let at = try Fx.date(Fx.now)
        let ch = [UInt8](repeating: 7, count: 16)
        func encode(card: String = Fx.card17, period: String = "2026", terminal: String = "KSK-TEST-0001",
                    entries: [UsageRecord.Entry] = [.init(program: "HM-SUBSIDY", usedFen: 1)], challenge: [UInt8]? = nil) throws -> [UInt8] {
            try UsageRecord.encode(cardNumber: card, period: period, sequence: 1, terminalID: terminal, writtenAt: at,
                                   entries: entries, challenge: challenge ?? ch, signer: signer)
        }
        let tooLong = String(repeating: "A", count: 17)
        #expect(throws: UsageWriteError.invalidProgramCode(tooLong)) { try encode(entries: [.init(program: tooLong, usedFen: 1)]) }
        #expect(throws: UsageWriteError.invalidProgramCode(String(repeating: "X", count: 300))) {
            try encode(entries: [.init(program: String(repeating: "X", count: 300), usedFen: 1)])
        }
        for bad in ["", "hm-subsidy", "HM SUBSIDY", "HM_SUBSIDY", "惠民"] {
            #expect(throws: UsageWriteError.invalidProgramCode(bad)) { try encode(entries: [.init(program: bad, usedFen: 1)]) }
        }
        #expect(throws: Never.self) { try encode(entries: [.init(program: String(repeating: "Z", count: 16), usedFen: 1)]) }
        #expect(throws: UsageWriteError.amountOutOfRange(program: "A", -1)) { try encode(entries: [.init(program: "A", usedFen: -1)]) }
        #expect(throws: UsageWriteError.amountOutOfRange(program: "A", 1 << 32)) { try encode(entries: [.init(program: "A", usedFen: 1 << 32)]) }
        #expect(throws: UsageWriteError.entryCount(0)) { try encode(entries: []) }
        #expect(throws: UsageWriteError.entryCount(4)) { try encode(entries: ["A", "B", "C", "D"].map { .init(program: $0, usedFen: 1) }) }
        #expect(throws: UsageWriteError.duplicateProgram("A")) { try encode(entries: [.init(program: "A", usedFen: 1), .init(program: "A", usedFen: 2)]) }
        #expect(throws: UsageWriteError.invalidPeriod("26")) { try encode(period: "26") }
        #expect(throws: UsageWriteError.invalidTerminalID("")) { try encode(terminal: "") }
        #expect(throws: UsageWriteError.invalidTerminalID(String(repeating: "T", count: 33))) { try encode(terminal: String(repeating: "T", count: 33)) }
        #expect(throws: UsageWriteError.invalidCardNumber("123")) { try encode(card: "123") }
        #expect(throws: UsageWriteError.invalidChallenge(length: 15)) { try encode(challenge: Array(ch.prefix(15))) }
        // The largest record §5.1 allows fits: 32-byte DF44, three 16-byte program codes.
        let big = try encode(terminal: String(repeating: "T", count: 32),
                             entries: ["A", "B", "C"].map { .init(program: String(repeating: $0, count: 16), usedFen: 1) })
        #expect(big.count == UsageRecord.maxObjectLength)
    }

    @Test func nextCarriesTheSamePeriodAndResetsANewOne() throws {
        let r = try UsageRecord(fileBytes: Self.stored)
        let same = try r.next(period: "2026", setting: [("HM-SUBSIDY", 30000), ("HM-CS-OUTPATIENT", 500)])
        #expect(same.sequence == 4 && same.entries == [.init(program: "HM-SUBSIDY", usedFen: 30000), .init(program: "HM-CS-OUTPATIENT", usedFen: 500)])
        let newYear = try r.next(period: "2027", setting: [("HM-SUBSIDY", 10000)])
        #expect(newYear.sequence == 4 && newYear.entries == [.init(program: "HM-SUBSIDY", usedFen: 10000)])
        #expect(throws: UsageWriteError.tooManyPrograms) {
            try UsageRecord.empty.next(period: "2026", setting: [("A", 1), ("B", 1), ("C", 1), ("D", 1)])
        }
        #expect(throws: UsageWriteError.invalidProgramCode("A-VERY-LONG-PROGRAM-CODE")) {
            try UsageRecord.empty.next(period: "2026", setting: [("A-VERY-LONG-PROGRAM-CODE", 1)])
        }
        #expect(throws: UsageWriteError.amountOutOfRange(program: "A", -5)) { try UsageRecord.empty.next(period: "2026", setting: [("A", -5)]) }
    }

    @Test func malformedRecordsAreUnreadable() throws {
        var cases = ["72 03 DF 41 04", "71 00", "72 06 DF 41 04 32 30 32 36",
                     "72 44 DF 46 40" + String(repeating: "00", count: 64)]   // signature but no fields
        // The write vectors' malformed records: no DF48, DF48 of 15 bytes, DF43 before DF41, four E1.
        for c in Vectors.writeVectors.cases where c.name.hasPrefix("malformed_") {
            let apdu = try Fx.hex(try #require(c.steps.last).apdu)
            cases.append(Array(apdu[5..<5 + Int(apdu[4])]).hexString)
        }
        #expect(cases.count == 8)
        for hex in cases {
            #expect(throws: CardFormatError.self, "\(hex)") { try UsageRecord(fileBytes: try Fx.hex(hex)) }
        }
        // A bad DF45 or program code.
        let body = try #require(try UsageRecord(fileBytes: Self.stored).body)
        func replacing(_ from: String, _ to: String, in bytes: [UInt8]) -> [UInt8] {
            let f = Array(from.utf8), t = Array(to.utf8)
            guard let i = (0...(bytes.count - f.count)).first(where: { Array(bytes[$0..<$0 + f.count]) == f }) else { return bytes }
            return Array(bytes[..<i]) + t + Array(bytes[(i + f.count)...])
        }
        for (from, to) in [("2026-10-08T01:15:00Z", "2026-10-08T25:15:00Z"), ("2026-10-08T01:15:00Z", "2026-02-30T01:15:00Z"),
                           ("HM-SUBSIDY", "hm-subsidy"), ("2026", "20X6")] {
            var b = body
            b.signedBytes = replacing(from, to, in: body.signedBytes)
            #expect(b.signedBytes != body.signedBytes && b.signedBytes.count == body.signedBytes.count)
            #expect(throws: CardFormatError.self, "\(to)") { try UsageRecord(fileBytes: UsageRecord(sequence: 3, body: b).object) }
        }
    }

    @Test func timestamps() throws {
        for s in ["2026-11-22T03:00:00Z", "2000-02-29T23:59:59Z", "1999-12-31T00:00:00Z", "2099-01-01T12:34:56Z"] {
            #expect(UsageRecord.timestamp(try #require(UsageRecord.parseTimestamp(s))) == s)
            #expect(UsageRecord.parseTimestamp(s) == (try Fx.date(s)))
        }
        for s in ["2026-11-22 03:00:00Z", "2026-11-22T03:00:00", "2026-13-01T00:00:00Z", "2026-11-22T03:60:00Z", "2026-11-22T03:00:00+08"] {
            #expect(UsageRecord.parseTimestamp(s) == nil, "\(s)")
        }
        #expect(UsageRecord.chinaStandardDate(ofWrittenAt: "2028-12-31T16:00:00Z")?.compact == "20290101")
    }
}
