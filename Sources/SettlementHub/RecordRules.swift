import Crypto
import Entitlements
import Foundation

/// One record of a batch as the hub reads it: its exact bytes and their hash, its
/// `record_id` (already known to name the signing device, upload spec §5 step 1) and the
/// `seq` that id carries, and either the record (the shared `SettlementRecord` model) or
/// why its structure is refused (upload spec §1, checked on the raw object at parse time).
struct IncomingRecord: Sendable {
    var bytes: [UInt8]
    var sha256: String
    var recordID: String
    /// The `<seq>` of `<device_id>-<seq>`: the record's place in the device's stream.
    var seq: Int64
    /// The record, or the refusal of its structure (`missing_fields`, `bad_fields`, …).
    var decoded: Result<SettlementRecord, Refusal>

    /// Reads one record object: its structure checked strictly on the raw JSON object
    /// (`RecordRules.structure`), then the model decoded from its bytes.
    init(bytes: [UInt8], sha256: String, recordID: String, seq: Int64, object: [String: Any]) {
        self.bytes = bytes
        self.sha256 = sha256
        self.recordID = recordID
        self.seq = seq
        if let refusal = RecordRules.structure(object, recordID: recordID, seq: seq) {
            decoded = .failure(refusal)
        } else {
            do { decoded = .success(try SettlementRecord(json: bytes)) } catch {
                decoded = .failure(Refusal("bad_fields", "the record cannot be read: \(error)"))
            }
        }
    }

    var record: SettlementRecord? { try? decoded.get() }
    var structureRefusal: Refusal? { if case .failure(let r) = decoded { return r } else { return nil } }
    var kind: RecordKind? { record?.kind }
}

/// A refusal: the spec's `reason` and a `detail` for people.
struct Refusal: Sendable, Equatable, Error {
    var reason: String
    var detail: String?
    /// The detail is masked (issue 21 item 6): it is stored with the answer, logged and sent
    /// back; a card number or person reference in it shows its ends only.
    init(_ reason: String, _ detail: String? = nil) {
        self.reason = reason
        self.detail = detail.map(Masking.text)
    }
}

/// A `medical_subsidy` record's fields (upload spec §1): the shared model's.
typealias SubsidyFields = SettlementRecord.MedicalSubsidy

extension SettlementRecord.MedicalSubsidy {
    /// The records of one bill: one card write (same card, same `card_sequence`) for one
    /// `bill_reference`. A bill subsidised again after a reversal is a new write, a new bill group.
    var billKey: BillKey { BillKey(billReference: billReference, cardNumber: cardNumber, cardSequence: cardSequence) }
}

struct BillKey: Hashable, Sendable {
    var billReference: String
    var cardNumber: String
    var cardSequence: Int64
}

/// One program's part of a bill, as a batch or the hub's store states it.
struct BillPart: Sendable, Equatable {
    var recordID: String
    var billFen: Int64
    var patientPaysFen: Int64
    var subsidyFen: Int64
}

/// Upload spec §1 (what a record holds) and the pure parts of §5 (what it may say).
public enum RecordRules {
    enum FieldType { case string, integer, boolean }

    static let common: [(String, FieldType)] = [("record_id", .string), ("seq", .integer), ("kind", .string), ("created_at", .string)]

    static let kinds: [String: [(String, FieldType)]] = [
        "medical_subsidy": [
            ("card_number", .string), ("person_ref", .string), ("program", .string), ("period", .string),
            ("bill_reference", .string), ("bill_fen", .integer), ("subsidy_fen", .integer), ("patient_pays_fen", .integer),
            ("used_before_fen", .integer), ("used_after_fen", .integer), ("card_sequence", .integer),
            ("card_challenge", .string), ("card_ack", .string), ("institution", .string),
        ],
        "subsidy_reversal": [("reverses", .string), ("amount_fen", .integer), ("reason", .string), ("operator", .string)],
        "legal_aid_application": [("card_number", .string), ("person_ref", .string), ("program", .string), ("matter", .string),
                                  ("priority", .boolean)],
        "alert": [("code", .string), ("detail", .string)],
    ]

    /// Step 1, per record: the `seq` in a `record_id` of the device `deviceID`
    /// (`<device_id>-<seq>`, seq a positive decimal without leading zeros), or nil.
    static func sequence(recordID: String, deviceID: String) -> Int64? {
        let prefix = deviceID + "-"
        guard recordID.hasPrefix(prefix) else { return nil }
        let digits = recordID.utf8.dropFirst(prefix.utf8.count)
        guard let first = digits.first, first != UInt8(ascii: "0"), digits.count <= 18,
              digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(String(decoding: digits, as: UTF8.self))
    }

    /// What every record and its kind must hold (upload spec §1), checked before the
    /// content: `missing_fields`, `bad_fields`, `unknown_kind`, `bad_created_at`, `bad_record_id`.
    static func structure(_ o: [String: Any], recordID: String, seq: Int64) -> Refusal? {
        var missing: [String] = []
        var wrong: [String] = []
        func field(_ name: String, _ type: FieldType) {
            guard let v = o[name] else { missing.append(name); return }
            switch type {
            case .string: if !(v is String) { wrong.append(name) }
            case .integer: if integer(v) == nil { wrong.append(name) }
            case .boolean: if !isBoolean(v) { wrong.append(name) }
            }
        }
        for (name, type) in common { field(name, type) }
        if o["snapshot_id"] == nil { missing.append("snapshot_id") } else if !(o["snapshot_id"] is String || o["snapshot_id"] is NSNull) {
            wrong.append("snapshot_id")
        }
        if !missing.isEmpty { return Refusal("missing_fields", missing.joined(separator: ",")) }
        if !wrong.isEmpty { return Refusal("bad_fields", wrong.joined(separator: ",")) }
        guard integer(o["seq"]) == seq else { return Refusal("bad_record_id", "seq must be the <seq> of record_id \(recordID)") }
        let kind = o["kind"] as? String ?? ""
        guard let fields = kinds[kind] else { return Refusal("unknown_kind", kind) }
        guard let created = o["created_at"] as? String, rfc3339(created) != nil else {
            return Refusal("bad_created_at", o["created_at"] as? String)
        }
        for (name, type) in fields { field(name, type) }
        if kind == "alert", let c = o["card_number"], !(c is String || c is NSNull) { wrong.append("card_number") }
        if kind == "legal_aid_application", let p = o["contact_phone"], !(p is String || p is NSNull) { wrong.append("contact_phone") }
        if !missing.isEmpty { return Refusal("missing_fields", missing.joined(separator: ",")) }
        if !wrong.isEmpty { return Refusal("bad_fields", wrong.joined(separator: ",")) }
        return nil
    }

    /// The arithmetic of one `medical_subsidy` (`bad_amounts`): nothing negative, `used_after
    /// = used_before + subsidy`, and its bill's parts (`bill`, this record's among them) agree
    /// on the bill and add up to `bill_fen − patient_pays_fen`.
    /// A bill, a subsidy, what a patient pays and a reversal: at most 99,999,999 fen.
    public static let maximumBillFen: Int64 = 99_999_999
    /// A program's used figures: at most 9,000,000,000,000 fen (snapshot spec's bound on `used_fen`).
    public static let maximumUsedFen: Int64 = 9_000_000_000_000

    static func amounts(_ s: SubsidyFields, bill: [BillPart]) -> Refusal? {
        let named = [("bill_fen", s.billFen), ("subsidy_fen", s.subsidyFen), ("patient_pays_fen", s.patientPaysFen),
                     ("used_before_fen", s.usedBeforeFen), ("used_after_fen", s.usedAfterFen)]
        if let negative = named.first(where: { $0.1 < 0 }) { return Refusal("bad_amounts", "\(negative.0) is negative") }
        // Bounded before anything sums them (amendment 2026-12-06): no sum of a region's
        // records can overflow a 64-bit integer.
        guard (1...maximumBillFen).contains(s.billFen) else { return Refusal("bad_amounts", "bill_fen is not 1–\(maximumBillFen)") }
        guard s.subsidyFen <= maximumBillFen, s.patientPaysFen <= maximumBillFen else {
            return Refusal("bad_amounts", "subsidy_fen and patient_pays_fen are at most \(maximumBillFen)")
        }
        guard s.subsidyFen <= s.billFen else { return Refusal("bad_amounts", "subsidy_fen is more than bill_fen") }
        guard s.usedBeforeFen <= maximumUsedFen, s.usedAfterFen <= maximumUsedFen else {
            return Refusal("bad_amounts", "used_before_fen and used_after_fen are at most \(maximumUsedFen)")
        }
        let after = s.usedBeforeFen.addingReportingOverflow(s.subsidyFen)
        guard !after.overflow, after.partialValue == s.usedAfterFen else {
            return Refusal("bad_amounts", "used_after_fen \(s.usedAfterFen) ≠ used_before_fen \(s.usedBeforeFen) + subsidy_fen \(s.subsidyFen)")
        }
        guard bill.allSatisfy({ $0.billFen == s.billFen && $0.patientPaysFen == s.patientPaysFen }) else {
            return Refusal("bad_amounts", "the records of bill \(s.billReference) disagree on bill_fen or patient_pays_fen")
        }
        var total: Int64 = 0
        for part in bill {
            let (sum, overflow) = total.addingReportingOverflow(part.subsidyFen)
            guard !overflow else { return Refusal("bad_amounts", "the subsidies of bill \(s.billReference) overflow") }
            total = sum
        }
        guard total == s.billFen - s.patientPaysFen else {
            return Refusal("bad_amounts", "the \(bill.count) program(s) of bill \(s.billReference) add up to \(total), "
                           + "not bill_fen − patient_pays_fen = \(s.billFen - s.patientPaysFen)")
        }
        return nil
    }

    /// "USAGE-ACK-V2" ‖ card number (16 ASCII bytes) ‖ DF43 (4 bytes, big-endian) ‖ DF48 (16 bytes): what the card signs
    /// when it takes a write (card spec §5.4). Nil when the record's fields cannot make it.
    static func ackMessage(cardNumber: String, cardSequence: Int64, cardChallenge: String) -> [UInt8]? {
        let number = Array(cardNumber.utf8)
        guard number.count == 16, number.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              (0...Int64(UInt32.max)).contains(cardSequence), let challenge = lowercaseHex(cardChallenge), challenge.count == 16 else { return nil }
        let sequence = UInt32(cardSequence)
        return Array("USAGE-ACK-V2".utf8) + number
            + [UInt8(sequence >> 24), UInt8(sequence >> 16 & 0xFF), UInt8(sequence >> 8 & 0xFF), UInt8(sequence & 0xFF)] + challenge
    }

    /// `bad_card_ack`: the record's `card_ack` verifies with the card's roster key over the
    /// acknowledgement of the write the record names.
    static func cardAck(_ s: SubsidyFields, cardKey: [UInt8]?) -> Refusal? {
        guard let cardKey, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: cardKey) else {
            return Refusal("bad_card_ack", "the roster has no public key for card \(s.cardNumber)")
        }
        guard let message = ackMessage(cardNumber: s.cardNumber, cardSequence: s.cardSequence, cardChallenge: s.cardChallenge) else {
            return Refusal("bad_card_ack", "card_number, card_sequence or card_challenge cannot make an acknowledgement")
        }
        guard let ack = Data(base64Encoded: s.cardAck), ack.count == 64 else {
            return Refusal("bad_card_ack", "card_ack is not base64 of 64 bytes")
        }
        guard key.isValidSignature(ack, for: message) else {
            return Refusal("bad_card_ack", "card_ack does not verify with the key of card \(s.cardNumber)")
        }
        return nil
    }

    /// `bad_card_auth` (upload spec §1 and §5 step 4, amendment 2026-12-06): the card's consent to
    /// a legal-aid application verifies with the card's roster key over "CARD-AUTH-V2" ‖ card
    /// number ‖ SHA-256(the challenge's preimage, from every field as the record carries it) ‖
    /// the 32 bytes of `card_usage_digest`. nil: it does.
    static func cardAuth(_ l: SettlementRecord.LegalAidApplication, deviceID: String, createdAt: String, cardKey: [UInt8]?) -> Refusal? {
        guard let auth = l.cardAuth, let digestText = l.cardUsageDigest else {
            return Refusal("bad_card_auth", "card_auth and card_usage_digest are required: without the card, no device files for its holder")
        }
        guard let digest = lowercaseHex(digestText), digest.count == 32 else {
            return Refusal("bad_card_auth", "card_usage_digest is not 64 lowercase hex digits")
        }
        // Canonical base64 only: another spelling of the same 64 bytes would slip past the
        // check that a consent is used once.
        guard let signature = Data(base64Encoded: auth), signature.count == 64, signature.base64EncodedString() == auth else {
            return Refusal("bad_card_auth", "card_auth is not the canonical base64 of 64 bytes")
        }
        guard let cardKey, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: cardKey) else {
            return Refusal("bad_card_auth", "the roster has no public key for card \(l.cardNumber)")
        }
        let challenge = Array(SHA256.hash(data: l.consentPreimage(deviceID: deviceID, createdAt: createdAt)))
        let message = Array("CARD-AUTH-V2".utf8) + Array(l.cardNumber.utf8) + challenge + digest
        guard key.isValidSignature(signature, for: message) else {
            return Refusal("bad_card_auth", "card_auth does not verify with the key of card \(l.cardNumber) over this application")
        }
        return nil
    }

    /// Step 5: `time_suspect` when `created_at` is more than 400 days before or 10 minutes
    /// after the hub's clock.
    static func timeSuspect(createdAt: String, now: Date) -> Bool {
        guard let created = rfc3339(createdAt) else { return true }
        return created < now.addingTimeInterval(-400 * 86_400) || created > now.addingTimeInterval(600)
    }

    static func lowercaseHex(_ s: String) -> [UInt8]? {
        let b = Array(s.utf8)
        guard b.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(b.count / 2)
        var i = 0
        while i < b.count {
            guard let h = nibble(b[i]), let l = nibble(b[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    /// A JSON integer: written without fraction or exponent, within Int64 (`1.0`, `1e3` and
    /// `true` are not integers), as the kiosk's own readers hold it (`JSONInteger`).
    static func integer(_ v: Any?) -> Int64? { JSONInteger.value(v) }

    /// A JSON `true`/`false` (Foundation gives NSNumbers; a boolean's type code is "c").
    static func isBoolean(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return n.objCType.pointee == 0x63
    }

    static func isRFC3339(_ s: String) -> Bool { rfc3339(s) != nil }

    /// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as an instant, or nil.
    /// A strict RFC 3339 UTC time (`YYYY-MM-DDTHH:MM:SSZ`), or nil.
    public static func rfc3339(_ s: String) -> Date? {
        let b = Array(s.utf8)
        guard b.count >= 20 else { return nil }
        func d(_ k: Int) -> Bool { b[k] >= 0x30 && b[k] <= 0x39 }
        func n(_ k: Int, _ count: Int) -> Int { (k..<(k + count)).reduce(0) { $0 * 10 + Int(b[$1] - 0x30) } }
        guard d(0), d(1), d(2), d(3), b[4] == 0x2D, d(5), d(6), b[7] == 0x2D, d(8), d(9), b[10] == 0x54 || b[10] == 0x74,
              d(11), d(12), b[13] == 0x3A, d(14), d(15), b[16] == 0x3A, d(17), d(18) else { return nil }
        let (year, month, day, hour, minute, second) = (n(0, 4), n(5, 2), n(8, 2), n(11, 2), n(14, 2), n(17, 2))
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...12).contains(month), (1...monthDays[month - 1]).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var i = 19
        var fraction = 0.0
        if b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.count && d(i) { i += 1 }
            guard i > start else { return nil }
            fraction = Double("0." + String(decoding: b[start..<i], as: UTF8.self)) ?? 0
        }
        guard i < b.count else { return nil }
        var offset = 0
        if b[i] == 0x5A || b[i] == 0x7A {
            guard i + 1 == b.count else { return nil }
        } else {
            guard b[i] == 0x2B || b[i] == 0x2D, i + 6 == b.count, d(i + 1), d(i + 2), b[i + 3] == 0x3A, d(i + 4), d(i + 5) else { return nil }
            let (oh, om) = (n(i + 1, 2), n(i + 4, 2))
            guard oh < 24, om < 60 else { return nil }
            offset = (oh * 60 + om) * 60 * (b[i] == 0x2D ? -1 : 1)
        }
        // days from 1970-01-01 (H. Hinnant's days_from_civil)
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }
}
