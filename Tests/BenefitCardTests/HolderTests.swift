import KioskProtocol
import Foundation
import SmartCard
import TestVectors
import Testing
@testable import BenefitCard

@Suite struct CitizenIDTests {
    @Test func vectorIDsAreValid() {
        for c in Vectors.cards { #expect(CitizenID.isValid(c.citizen_id), "\(c.citizen_id)") }
    }

    @Test func wrongCheckDigitDateOrLengthIsInvalid() {
        let good = "330782195603121285"
        #expect(!CitizenID.isValid("330782195603121284"))
        #expect(!CitizenID.isValid("330782195613121285".prefix(17) + "5"))   // month 13
        #expect(!CitizenID.isValid(String(good.prefix(17))))
        #expect(!CitizenID.isValid("33078219560312128５"))
    }

    @Test func xCheckCharacter() {
        // 11010519491231002X is the standard's own example.
        #expect(CitizenID.checkCharacter("11010519491231002") == "X")
        #expect(CitizenID.isValid("11010519491231002X") && CitizenID.isValid("11010519491231002x"))
    }
}

@Suite struct HolderTests {
    static func holderObject(_ number: String) throws -> TLV {
        try TLV.parseSingle(try #require([UInt8](hex: Vectors.cardDescription(number).files.holder))).0
    }

    @Test(arguments: Vectors.cards.map(\.card_number))
    func everyVectorCardParses(_ number: String) throws {
        let v = try #require(Vectors.cards.first { $0.card_number == number })
        let h = try Holder(object: Self.holderObject(number))
        #expect(h.cardNumber == v.card_number && h.name == v.name)
        #expect(h.personRef == v.person_ref)
        // The identity number is validated, never kept: no field of the holder holds it.
        #expect(!String(describing: h).contains(v.citizen_id))
        #expect(h.category.codeString == v.category && h.region == v.region)
        #expect(h.issued == CardDate(v.issued) && h.expires == CardDate(v.expires))
        #expect(h.issuerKeyID == "330782-issuer-test")
        #expect(Data(h.cardPublicKey).base64EncodedString() == v.card_public_key)
    }

    func rebuilt(replacing tag: UInt32, with value: [UInt8]?, extra: [TLV] = [], reversed: Bool = false) throws -> TLV {
        var children = try Self.holderObject("3307820000000017").children()
        if let value { children = children.map { $0.tag == tag ? TLV(tag: tag, value: value) : $0 } }
        else { children.removeAll { $0.tag == tag } }
        children += extra
        if reversed { children.reverse() }
        return TLV.constructed(0x70, children)
    }

    @Test func anyOrderAndUnknownTagsAreFine() throws {
        let t = try rebuilt(replacing: 0, with: nil, extra: [TLV(tag: 0xDF7F, value: [1, 2, 3]), TLV(tag: 0x5F20, value: [])], reversed: true)
        #expect(try Holder(object: t).cardNumber == "3307820000000017")
    }

    @Test(arguments: [0xDF21, 0xDF22, 0xDF23, 0xDF24, 0xDF25, 0xDF26, 0xDF27, 0xDF28, 0xDF29, 0xDF2A] as [UInt32])
    func missingRequiredTagIsUnreadable(_ tag: UInt32) throws {
        #expect(throws: CardFormatError.self) { try Holder(object: rebuilt(replacing: tag, with: nil)) }
    }

    @Test func invalidFieldsAreUnreadable() throws {
        let bad: [(UInt32, [UInt8])] = [
            (0xDF21, Array("330782000000001".utf8)),           // 15 digits
            (0xDF21, Array("33078200000000A7".utf8)),          // not digits
            (0xDF22, []),                                      // empty name
            (0xDF22, [0xE7, 0x8E]),                            // broken UTF-8
            (0xDF22, [UInt8](repeating: 0x41, count: 31)),     // 31 bytes
            (0xDF23, Array("330782195603121284".utf8)),        // check digit
            (0xDF24, [0x01, 0x02]),
            (0xDF25, Array("33078".utf8)),
            (0xDF26, Array("20260230".utf8)),                  // 30 February
            (0xDF27, Array("20251231".utf8)),                  // expires before issued
            (0xDF28, []),
            (0xDF29, [UInt8](repeating: 1, count: 31)),
            (0xDF2A, [UInt8](repeating: 1, count: 15)),          // person reference of 15 bytes
            (0xDF2A, [UInt8](repeating: 1, count: 17)),
        ]
        for (tag, value) in bad {
            #expect(throws: CardFormatError.self, "tag \(String(tag, radix: 16))") {
                try Holder(object: rebuilt(replacing: tag, with: value))
            }
        }
        #expect(throws: CardFormatError.duplicateField(tag: 0xDF21)) {
            try Holder(object: rebuilt(replacing: 0, with: nil, extra: [TLV(tag: 0xDF21, value: Array("3307820000000017".utf8))]))
        }
        #expect(throws: CardFormatError.wrongTemplate(file: "EF.HOLDER", expected: 0x70, found: 0x71)) {
            try Holder(object: TLV(tag: 0x71, value: []))
        }
    }

    @Test func expiryIsTheEndOfTheDayInChinaStandardTime() throws {
        let h = try Holder(object: Self.holderObject("3307820000000017"))   // expires 20301231
        let f = ISO8601DateFormatter()
        #expect(!h.isExpired(at: try #require(f.date(from: "2030-12-31T15:59:59Z"))))
        #expect(h.isExpired(at: try #require(f.date(from: "2030-12-31T16:00:00Z"))))
    }

    @Test func periodIsTheYearInChinaStandardTime() throws {
        let f = ISO8601DateFormatter()
        #expect(ChinaStandardTime.period(of: try #require(f.date(from: "2026-12-31T15:59:59Z"))) == "2026")
        #expect(ChinaStandardTime.period(of: try #require(f.date(from: "2026-12-31T16:00:00Z"))) == "2027")
    }

    @Test func personRefIsLowercaseHexOfDF2A() throws {
        let ref: [UInt8] = [0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x89]
        #expect(try Holder(object: rebuilt(replacing: 0xDF2A, with: ref)).personRef == "abcdef0123456789abcdef0123456789")
        // The same person on two cards (…0041 and its replacement …0058): one reference.
        let a = try Holder(object: Self.holderObject("3307820000000041")), b = try Holder(object: Self.holderObject("3307820000000058"))
        #expect(a.personRef == b.personRef && a.cardNumber != b.cardNumber)
    }

    @Test func masking() {
        #expect(Masking.cardNumber("3307820000000017") == "3307********0017")
        #expect(Masking.name("王秀英") == "王**")
        #expect(Masking.name("李") == "李")
    }

    @Test func cardDatesInChinaStandardTime() throws {
        let f = ISO8601DateFormatter()
        #expect(CardDate(date: try #require(f.date(from: "2028-12-31T16:00:00Z"))).compact == "20290101")
        #expect(CardDate(date: try #require(f.date(from: "2028-12-31T15:59:59Z"))).compact == "20281231")
        #expect(CardDate(date: try #require(f.date(from: "2024-02-28T16:00:00Z"))) == CardDate("20240229"))
        let d = try #require(CardDate("20270207"))
        #expect(d.startChinaStandardTime == f.date(from: "2027-02-06T16:00:00Z"))
        #expect(d.endOfDayChinaStandardTime == f.date(from: "2027-02-07T16:00:00Z"))
        #expect(CardDate(year: 2026, month: 2, day: 29) == nil && CardDate(year: 2028, month: 2, day: 29) != nil)
        for day in stride(from: -800_000.0, to: 80_000.0 * 86_400, by: 86_400 * 37.3) {
            let date = Date(timeIntervalSince1970: day)
            let viaCalendar = ChinaStandardTime.calendar.dateComponents([.year, .month, .day], from: date)
            let c = CardDate(date: date)
            #expect([c.year, c.month, c.day] == [viaCalendar.year, viaCalendar.month, viaCalendar.day])
        }
    }
}
