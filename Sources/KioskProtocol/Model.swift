import Foundation

/// Money: an integer number of fen (1 yuan = 100 fen). Never floating point.
public typealias Fen = Int64

/// The stable decision codes of snapshot spec §6: the same on screen, in `--json`,
/// in logs and in upload records.
public enum ReasonCode: String, Sendable, Codable, CaseIterable {
    /// `granted`: a subsidy was decided; `eligible`: a status check found the card usable.
    case granted, eligible
    /// The card answered, but not as card spec §2–3 says.
    case cardUnreadable = "card_unreadable"
    /// The issuer signature or the INTERNAL AUTHENTICATE answer does not verify (card spec §3.2, §4).
    case cardNotAuthentic = "card_not_authentic"
    /// The card's expiry date (`DF27`) has passed.
    case cardExpired = "card_expired"
    /// The snapshot holds no entry for the card, or none for its person.
    case cardUnknown = "card_unknown"
    /// The card's entry is `lost`.
    case cardLost = "card_lost"
    /// The card's entry is `revoked`.
    case cardRevoked = "card_revoked"
    /// The card's entry is `replaced`.
    case cardReplaced = "card_replaced"
    /// The person's entry is `suspended`; the detail is its reason.
    case personSuspended = "person_suspended"
    /// The person's entry is `revoked`; the detail is its reason.
    case personRevoked = "person_revoked"
    /// No program of the person serves this card's type and category (snapshot spec §4), or none covers what was asked.
    case notEligible = "not_eligible"
    /// Nothing left this period: no program would subsidise anything (snapshot spec §5).
    case limitExhausted = "limit_exhausted"
    /// No snapshot is installed.
    case snapshotMissing = "snapshot_missing"
    /// The installed snapshot has expired; refuses subsidies only.
    case snapshotExpired = "snapshot_expired"
    /// The card left the reader, was reset or lost power mid-command (card spec §1).
    case cardRemoved = "card_removed"
    /// The card refused a command of the write; nothing deducted (card spec §5.5).
    case cardWriteRefused = "card_write_refused"
    /// The kiosk's clock is suspect, or the card's time is ahead of it; refuses subsidies only.
    case clockSuspect = "clock_suspect"
    /// This kiosk may not grant: retired or absent in the snapshot, or its certificate not valid; subsidies only.
    case deviceRetired = "device_retired"
    /// Issue 20: the bill names its patient and this card's holder is someone else. Nothing
    /// is read for the bill beyond the card's authentication, nothing written; the bill waits.
    case wrongPatient = "wrong_patient"
    /// Issue 20: a card files at most 3 legal-aid applications a day (China Standard Time).
    case legalAidDailyLimit = "legal_aid_daily_limit"
}

/// The two card applications (card spec §2): 惠民医疗卡 (`medical`) and 法律援助卡 (`legal_aid`),
/// as a program's `card_type` names them.
public enum CardKind: String, Sendable, Codable {
    /// 惠民医疗卡.
    case medical
    /// 法律援助卡.
    case legalAid = "legal_aid"
}

/// A legal-aid matter a program covers (the program record's `matters`).
public struct Matter: Sendable, Codable, Equatable, Hashable {
    /// The matter code: 1–32 characters of `a–z 0–9 _` (`Identifiers.isMatterCode`).
    public var code: String
    /// The matter's name as shown and printed.
    public var name: String
    /// A matter from its code and name.
    public init(code: String, name: String) { self.code = code; self.name = name }
}

/// A `program` record of the snapshot.
public struct Program: Sendable, Codable, Equatable {
    /// The program code: 1–16 characters of `A–Z 0–9 -` (`Identifiers.isProgramCode`).
    public var code: String
    /// The card type the program serves (`card_type`).
    public var cardType: CardKind
    /// The program's name as shown and printed.
    public var name: String
    /// The holder categories it serves, two hex digits each (`"01"`).
    public var categories: [String]
    /// Order among a person's programs: lower first, ties by code (snapshot spec §5).
    public var priority: Int
    /// The allowance per period, in fen (`limit_fen`); required of a medical program.
    public var limitFen: Fen?
    /// The share of a bill subsidised, 1–100 (`rate_percent`); required of a medical program.
    public var ratePercent: Int?
    /// The period of a medical program's limit: `calendar_year`, the only one, or absent.
    public var period: String?
    /// Legal aid: the matters an application under this program may name.
    public var matters: [Matter]?

    enum CodingKeys: String, CodingKey {
        case code, cardType = "card_type", name, categories, priority
        case limitFen = "limit_fen", ratePercent = "rate_percent", period, matters
    }

    /// A program from its fields; the medical ones (limit, rate, period) default to absent.
    public init(code: String, cardType: CardKind, name: String, categories: [String], priority: Int,
                limitFen: Fen? = nil, ratePercent: Int? = nil, period: String? = nil, matters: [Matter]? = nil) {
        self.code = code; self.cardType = cardType; self.name = name; self.categories = categories
        self.priority = priority; self.limitFen = limitFen; self.ratePercent = ratePercent
        self.period = period; self.matters = matters
    }
}

/// A person entry's `status` (snapshot spec §3): only `active` is usable.
public enum PersonStatus: String, Sendable, Codable { case active, suspended, revoked }
/// A card entry's `status` (snapshot spec §3): only `active` is usable.
public enum CardStatus: String, Sendable, Codable { case active, lost, revoked, replaced }

/// A `person` record (snapshot spec v2): keyed by the platform's person reference (card
/// `DF2A`, 32 lowercase hex digits), never by anything derived from an identity number.
public struct Person: Sendable, Codable, Equatable {
    /// The person reference: 32 lowercase hex digits, the card's `DF2A`.
    public var personRef: String
    /// Whether the person is active, suspended or revoked.
    public var status: PersonStatus
    /// Why suspended or revoked, given as the refusal's detail; empty when none.
    public var statusReason: String
    /// The codes of the programs the person is entitled to.
    public var programs: [String]
    /// A person entry from its fields.
    public init(personRef: String, status: PersonStatus, statusReason: String = "", programs: [String]) {
        self.personRef = personRef; self.status = status; self.statusReason = statusReason; self.programs = programs
    }
}

/// A `card` record of the snapshot: a card number, its person and its status.
public struct CardEntry: Sendable, Codable, Equatable {
    /// The card number (16 digits).
    public var cardNumber: String
    /// The person the card belongs to (32 lowercase hex digits).
    public var personRef: String
    /// Whether the card is active, lost, revoked or replaced.
    public var status: CardStatus
    /// A card entry from its fields.
    public init(cardNumber: String, personRef: String, status: CardStatus) {
        self.cardNumber = cardNumber; self.personRef = personRef; self.status = status
    }
}

/// What a `person_ref` and a program code must look like (snapshot spec v2 §1 "Rules",
/// card spec §3.1 and §5.1), checked wherever one enters the kiosk.
public enum Identifiers {
    /// 32 lowercase hex digits.
    public static func isPersonRef(_ s: String) -> Bool {
        s.utf8.count == 32 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
    /// 1–16 characters of `A–Z 0–9 -`: it must fit the card's `DF47`.
    public static func isProgramCode(_ s: String) -> Bool {
        (1...16).contains(s.utf8.count) && s.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }
    /// 1–32 characters of `a–z 0–9 _`: it must fit the receipt's QR.
    public static func isMatterCode(_ s: String) -> Bool {
        (1...32).contains(s.utf8.count) && s.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }
    /// 16 ASCII digits.
    public static func isCardNumber(_ s: String) -> Bool {
        s.utf8.count == 16 && s.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }
    /// A device identifier: 1–20 characters of `A–Z 0–9 -` (receipt spec §1, so the QR fits).
    public static func isDeviceID(_ s: String) -> Bool {
        (1...20).contains(s.utf8.count) && s.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }
    /// A snapshot id or region as sync puts them in URLs and file names (sync spec §2–3):
    /// 1–64 of `A–Z a–z 0–9 . _ -`, not starting with `.`.
    public static func isSyncName(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard (1...64).contains(b.count), b[0] != UInt8(ascii: ".") else { return false }
        return b.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }
}

/// The usage figures of one person, program and period (snapshot spec §5).
public struct UsageFigures: Sendable, Equatable {
    /// S: what the snapshot has settled.
    public var snapshotFen: Fen
    /// L: this device's committed (and pending) subsidies less reversals the snapshot does not count yet.
    public var localFen: Fen
    /// C: what the card's own EF.USAGE says for the period.
    public var cardFen: Fen
    /// Figures in fen, each 0 unless given.
    public init(snapshotFen: Fen = 0, localFen: Fen = 0, cardFen: Fen = 0) {
        self.snapshotFen = snapshotFen; self.localFen = localFen; self.cardFen = cardFen
    }
    /// used = max(S + L, C). Checked: a sum that would overflow counts as everything used
    /// (fails closed: nothing left), never a trap.
    public var used: Fen {
        let (sum, overflow) = snapshotFen.addingReportingOverflow(localFen)
        return max(overflow ? Fen.max : sum, cardFen)
    }
}

/// China Standard Time (UTC+8): periods are its calendar years.
public enum Period {
    /// UTC+8.
    public static let timeZone = TimeZone(secondsFromGMT: 8 * 3600)!
    /// The period `date` falls in: its year in China Standard Time, as text (`"2026"`).
    public static func of(_ date: Date) -> String {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return String(c.component(.year, from: date))
    }
}
