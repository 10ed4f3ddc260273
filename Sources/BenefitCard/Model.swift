import KioskProtocol
import Crypto
import Foundation
import SmartCard

/// The two card applications of card spec v2.
public enum CardType: String, Sendable, CaseIterable, Codable {
    /// 惠民医疗卡, AID `F1 48 55 49 4D 49 4E 01`, type `01`.
    case medical
    /// 法律援助卡, AID `F1 46 41 59 55 41 4E 01`, type `02`.
    case legalAid = "legal_aid"

    /// The application identifier SELECT names (card spec §2).
    public var aid: [UInt8] {
        switch self {
        case .medical: return [0xF1, 0x48, 0x55, 0x49, 0x4D, 0x49, 0x4E, 0x01]   // F1 "HUIMIN" 01
        case .legalAid: return [0xF1, 0x46, 0x41, 0x59, 0x55, 0x41, 0x4E, 0x01]  // F1 "FAYUAN" 01
        }
    }
    /// The card type in the FCI's `DF01`: `01` medical, `02` legal aid.
    public var typeByte: UInt8 { self == .medical ? 0x01 : 0x02 }
    /// 惠民医疗卡 or 法律援助卡.
    public var chineseName: String { self == .medical ? "惠民医疗卡" : "法律援助卡" }
    /// Selection order when the terminal does not know which card it holds (§2).
    public static let selectionOrder: [CardType] = [.medical, .legalAid]
}

/// Holder categories (card spec §3.1, `DF24`).
public struct HolderCategory: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The `DF24` byte.
    public let code: UInt8
    /// A category of any code, known or not.
    public init(code: UInt8) { self.code = code }
    /// Two hex digits as in the snapshot (`"01"`).
    public var codeString: String { Hex.encode([code], uppercase: true) }
    /// The categories the spec names, with their Chinese names.
    public static let known: [UInt8: String] = [
        0x01: "城乡最低生活保障对象（低保）", 0x02: "农村五保供养对象", 0x03: "城镇“三无”人员",
        0x04: "低保边缘户", 0x05: "贫困残疾人", 0x06: "下岗失业困难人员", 0x09: "政府确定的其他救助对象",
    ]
    /// The category's Chinese name; 未知类别 for a code the spec does not name.
    public var chineseName: String { HolderCategory.known[code] ?? "未知类别" }
    /// Whether the spec names the code.
    public var isKnown: Bool { HolderCategory.known[code] != nil }
    /// The code and the Chinese name (`01 城乡最低生活保障对象（低保）`).
    public var description: String { "\(codeString) \(chineseName)" }
}

/// A calendar date `YYYYMMDD` as written on the card.
public struct CardDate: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The date's parts (month and day 1-based).
    public let year: Int, month: Int, day: Int

    /// A date from `YYYYMMDD`; nil unless 8 digits making a calendar date of 1900 or later.
    public init?(_ text: String) {
        let u = Array(text.utf8)
        guard u.count == 8, u.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        let y = Int(text.prefix(4))!, m = Int(text.dropFirst(4).prefix(2))!, d = Int(text.suffix(2))!
        guard y >= 1900, (1...12).contains(m), d >= 1, d <= CardDate.daysIn(month: m, year: y) else { return nil }
        year = y; month = m; day = d
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Calendar order.
    public static func < (a: CardDate, b: CardDate) -> Bool {
        (a.year, a.month, a.day) < (b.year, b.month, b.day)
    }

    /// A date from its parts; nil when it is not a calendar date.
    public init?(year: Int, month: Int, day: Int) {
        guard (1...12).contains(month), day >= 1, day <= CardDate.daysIn(month: month, year: year) else { return nil }
        self.year = year; self.month = month; self.day = day
    }

    /// The calendar date of `date` in China Standard Time (UTC+8).
    public init(date: Date) {
        let seconds = Int64((date.timeIntervalSince1970).rounded(.down)) + 8 * 3600
        let days = seconds >= 0 ? seconds / 86_400 : -((-seconds + 86_399) / 86_400)
        (year, month, day) = CardDate.civil(fromDays: days)
    }

    /// `YYYYMMDD`, as the card and the device certificate write it.
    public var compact: String { String(format: "%04d%02d%02d", year, month, day) }

    /// Days since 1970-01-01 of this calendar date (proleptic Gregorian): KioskProtocol's
    /// one `CivilCalendar`.
    var daysSinceEpoch: Int64 { CivilCalendar.days(year: Int64(year), month: Int64(month), day: Int64(day)) }

    static func civil(fromDays days: Int64) -> (Int, Int, Int) {
        let (y, m, d) = CivilCalendar.date(days: days)
        return (Int(y), Int(m), Int(d))
    }

    /// The first instant of this day in China Standard Time.
    public var startChinaStandardTime: Date {
        Date(timeIntervalSince1970: TimeInterval(daysSinceEpoch * 86_400 - 8 * 3600))
    }

    /// The first instant after this day ends in China Standard Time.
    public var endOfDayChinaStandardTime: Date { startChinaStandardTime.addingTimeInterval(86_400) }

    /// `YYYY-MM-DD`.
    public var description: String { String(format: "%04d-%02d-%02d", year, month, day) }
}

/// China Standard Time (UTC+8, no daylight saving): periods and expiry are in it.
public enum ChinaStandardTime {
    /// UTC+8.
    public static let timeZone = TimeZone(secondsFromGMT: 8 * 3600)!
    /// A Gregorian calendar in China Standard Time.
    public static let calendar: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return c
    }()
    /// The calendar year in China Standard Time, the period of card and snapshot specs.
    public static func period(of date: Date) -> String {
        String(CardDate(date: date).year)
    }
}

/// GB 11643-1999 citizen identity numbers: EF.HOLDER's `DF23` is checked, never kept (card spec v2:
/// the kiosk derives and stores nothing from it; persons are keyed by `DF2A`).
public enum CitizenID {
    static let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    static let checkChars = Array("10X98765432")

    /// The check character for the first 17 digits.
    public static func checkCharacter(_ first17: String) -> Character? {
        let digits = first17.compactMap(\.wholeNumberValue)
        guard first17.count == 17, digits.count == 17, first17.allSatisfy(\.isASCII) else { return nil }
        let sum = zip(digits, weights).reduce(0) { $0 + $1.0 * $1.1 }
        return checkChars[sum % 11]
    }

    /// 18 ASCII characters, a valid birth date and a valid check character (a final
    /// `x` counts as `X`).
    public static func isValid(_ id: String) -> Bool {
        guard id.utf8.count == 18, id.allSatisfy(\.isASCII) else { return false }
        guard CardDate(String(id.dropFirst(6).prefix(8))) != nil else { return false }
        guard let check = checkCharacter(String(id.prefix(17))) else { return false }
        return Character(id.suffix(1).uppercased()) == check
    }
}

/// A patient's identity number kept only as a keyed digest in this process's memory (issue
/// 20): a bill that names its patient is matched against the card's `DF23` without either
/// number being kept. The key is random per process, so a digest means nothing outside it
/// (nor after a restart) and is never written anywhere.
public enum PatientIdentity {
    private static let key = SymmetricKey(size: .bits256)

    /// The digest of a valid identity number (a final `x` counts as `X`), or nil when the
    /// number is not 18 characters with a valid GB 11643 check character.
    public static func digest(_ id: String) -> [UInt8]? {
        guard CitizenID.isValid(id) else { return nil }
        return Array(HMAC<SHA256>.authenticationCode(for: Array(id.uppercased().utf8), using: key))
    }

    /// Compares two digests in time that does not depend on where they differ.
    public static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, !a.isEmpty else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
