import Foundation

/// Money: an integer number of fen (1 yuan = 100 fen). Never floating point.
public typealias Fen = Int64

/// The stable decision codes of snapshot spec §6: the same on screen, in `--json`,
/// in logs and in upload records.
public enum ReasonCode: String, Sendable, Codable, CaseIterable {
    case granted, eligible
    case cardUnreadable = "card_unreadable"
    case cardNotAuthentic = "card_not_authentic"
    case cardExpired = "card_expired"
    case cardUnknown = "card_unknown"
    case cardLost = "card_lost"
    case cardRevoked = "card_revoked"
    case cardReplaced = "card_replaced"
    case personSuspended = "person_suspended"
    case personRevoked = "person_revoked"
    case notEligible = "not_eligible"
    case limitExhausted = "limit_exhausted"
    case snapshotMissing = "snapshot_missing"
    case snapshotExpired = "snapshot_expired"
    case cardRemoved = "card_removed"
    case cardWriteRefused = "card_write_refused"
    case clockSuspect = "clock_suspect"
    case deviceRetired = "device_retired"
    /// Issue 20: the bill names its patient and this card's holder is someone else. Nothing
    /// is read for the bill beyond the card's authentication, nothing written; the bill waits.
    case wrongPatient = "wrong_patient"
    /// Issue 20: a card files at most 3 legal-aid applications a day (China Standard Time).
    case legalAidDailyLimit = "legal_aid_daily_limit"
}

public enum CardKind: String, Sendable, Codable {
    case medical
    case legalAid = "legal_aid"
}

public struct Matter: Sendable, Codable, Equatable, Hashable {
    public var code: String
    public var name: String
    public init(code: String, name: String) { self.code = code; self.name = name }
}

/// A `program` record of the snapshot.
public struct Program: Sendable, Codable, Equatable {
    public var code: String
    public var cardType: CardKind
    public var name: String
    public var categories: [String]
    public var priority: Int
    public var limitFen: Fen?
    public var ratePercent: Int?
    public var period: String?
    public var matters: [Matter]?

    enum CodingKeys: String, CodingKey {
        case code, cardType = "card_type", name, categories, priority
        case limitFen = "limit_fen", ratePercent = "rate_percent", period, matters
    }

    public init(code: String, cardType: CardKind, name: String, categories: [String], priority: Int,
                limitFen: Fen? = nil, ratePercent: Int? = nil, period: String? = nil, matters: [Matter]? = nil) {
        self.code = code; self.cardType = cardType; self.name = name; self.categories = categories
        self.priority = priority; self.limitFen = limitFen; self.ratePercent = ratePercent
        self.period = period; self.matters = matters
    }
}

public enum PersonStatus: String, Sendable, Codable { case active, suspended, revoked }
public enum CardStatus: String, Sendable, Codable { case active, lost, revoked, replaced }

/// A `person` record (snapshot spec v2): keyed by the platform's person reference (card
/// `DF2A`, 32 lowercase hex digits), never by anything derived from an identity number.
public struct Person: Sendable, Codable, Equatable {
    public var personRef: String
    public var status: PersonStatus
    public var statusReason: String
    public var programs: [String]
    public init(personRef: String, status: PersonStatus, statusReason: String = "", programs: [String]) {
        self.personRef = personRef; self.status = status; self.statusReason = statusReason; self.programs = programs
    }
}

public struct CardEntry: Sendable, Codable, Equatable {
    public var cardNumber: String
    public var personRef: String
    public var status: CardStatus
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
    public static let timeZone = TimeZone(secondsFromGMT: 8 * 3600)!
    public static func of(_ date: Date) -> String {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return String(c.component(.year, from: date))
    }
}
