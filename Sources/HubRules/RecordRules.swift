import Crypto
import KioskProtocol
import Foundation

/// One record of a batch as the hub reads it: its exact bytes and their hash, its
/// `record_id` (already known to name the signing device, upload spec §5 step 1) and the
/// `seq` that id carries, and either the record (the shared `SettlementRecord` model) or
/// why its structure is refused (upload spec §1, checked on the raw object at parse time).
package struct IncomingRecord: Sendable {
    package var bytes: [UInt8]
    package var sha256: String
    package var recordID: String
    /// The `<seq>` of `<device_id>-<seq>`: the record's place in the device's stream.
    package var seq: Int64
    /// The record, or the refusal of its structure (`missing_fields`, `bad_fields`, …).
    package var decoded: Result<SettlementRecord, Refusal>

    /// Reads one record object: its structure checked strictly on its members as the strict
    /// reader gives them (`RecordRules.structure`), then the model built from those members.
    /// A text that is not one JSON object (`members` nil) is `bad_fields`.
    package init(bytes: [UInt8], sha256: String, recordID: String, seq: Int64, members: RecordMembers?) {
        self.bytes = bytes
        self.sha256 = sha256
        self.recordID = recordID
        self.seq = seq
        guard let members else {
            decoded = .failure(Refusal("bad_fields", "the record is not a JSON object"))
            return
        }
        if let refusal = RecordRules.structure(members, recordID: recordID, seq: seq) {
            decoded = .failure(refusal)
        } else {
            do { decoded = .success(try SettlementRecord(checked: members)) } catch {
                decoded = .failure(Refusal("bad_fields", "the record cannot be read: \(error.description)"))
            }
        }
    }

    /// The same, its members read here.
    package init(bytes: [UInt8], sha256: String, recordID: String, seq: Int64) {
        self.init(bytes: bytes, sha256: sha256, recordID: recordID, seq: seq, members: RecordMembers(bytes))
    }

    package var record: SettlementRecord? { try? decoded.get() }
    package var structureRefusal: Refusal? { if case .failure(let r) = decoded { return r } else { return nil } }
    package var kind: RecordKind? { record?.kind }
}

/// A record's members as the contract's strict reader gives them (`StrictJSON`, issue 24
/// item 5: it replaced `JSONSerialization`, a tenth of the hub's time in a drain): the flat
/// values (a string, an integer within Int64, `true`, `false`, `null`), every key
/// present, and the keys given twice.
package struct RecordMembers: Sendable {
    /// Each key's value when it is flat (a later duplicate's wins; duplicates are refused).
    package var flat: [String: StrictJSON.Value] = [:]
    /// Every key, flat or not (an array, an object, a fraction or an exponent).
    package var present: Set<String> = []
    /// Keys given more than once.
    package var duplicates: [String] = []

    /// The member's text when it is a string.
    package func string(_ key: String) -> String? {
        if case .string(let s)? = flat[key] { return s } else { return nil }
    }

    /// The members of `bytes`; nil when it is not exactly one JSON object (RFC 8259).
    package init?(_ bytes: [UInt8]) {
        guard let members = StrictJSON.flatMembers(bytes, int64: true) else { return nil }
        for (key, value) in members {
            if !present.insert(key).inserted { duplicates.append(key) }
            flat[key] = value
        }
    }
}

extension SettlementRecord {
    /// Why members that passed the structure check still make no record: an optional member
    /// (`card_auth`, `card_usage_digest`, an alert's `operator`) present with another type,
    /// as `JSONDecoder` refused it.
    package struct Unreadable: Error, CustomStringConvertible {
        /// The member.
        package var key: String
        /// Says which member is not what the model takes.
        package var description: String { "\(key) is not of the type the record takes" }
    }

    /// The record read from its members once `RecordRules.structure` passed them, without
    /// `JSONDecoder` (issue 24 item 5: 8.6 % of the hub's time in a drain went to it). It
    /// takes and refuses what `SettlementRecord(json:)` does (tested on random records of
    /// every kind, `RecordFromMembersTests`).
    package init(checked m: RecordMembers) throws(Unreadable) {
        func string(_ key: String) throws(Unreadable) -> String {
            guard let s = m.string(key) else { throw Unreadable(key: key) }
            return s
        }
        func integer(_ key: String) throws(Unreadable) -> Int64 {
            guard case .integer(let v)? = m.flat[key] else { throw Unreadable(key: key) }
            return v
        }
        /// Absent or `null`: nil; a string: it; anything else is refused, as `decodeIfPresent` does.
        func optional(_ key: String) throws(Unreadable) -> String? {
            guard m.present.contains(key) else { return nil }
            switch m.flat[key] {
            case .string(let s)?: return s
            case .null?: return nil
            default: throw Unreadable(key: key)
            }
        }
        let content: Content
        switch RecordKind(rawValue: try string("kind")) {
        case .medicalSubsidy?:
            content = .medicalSubsidy(MedicalSubsidy(
                cardNumber: try string("card_number"), personRef: try string("person_ref"), program: try string("program"),
                period: try string("period"), billReference: try string("bill_reference"), billFen: try integer("bill_fen"),
                subsidyFen: try integer("subsidy_fen"), patientPaysFen: try integer("patient_pays_fen"),
                usedBeforeFen: try integer("used_before_fen"), usedAfterFen: try integer("used_after_fen"),
                cardSequence: try integer("card_sequence"), cardChallenge: try string("card_challenge"), cardAck: try string("card_ack"),
                institution: try string("institution")))
        case .subsidyReversal?:
            content = .subsidyReversal(SubsidyReversal(reverses: try string("reverses"), amountFen: try integer("amount_fen"),
                                                       reason: try string("reason"), operator: try string("operator")))
        case .legalAidApplication?:
            guard case .bool(let priority)? = m.flat["priority"] else { throw Unreadable(key: "priority") }
            content = .legalAidApplication(LegalAidApplication(
                cardNumber: try string("card_number"), personRef: try string("person_ref"), program: try string("program"),
                matter: try string("matter"), priority: priority, contactPhone: try optional("contact_phone"),
                cardUsageDigest: try optional("card_usage_digest"), cardAuth: try optional("card_auth")))
        case .alert?:
            content = .alert(Alert(code: try string("code"), cardNumber: try optional("card_number"), detail: try string("detail"),
                                   operator: try optional("operator")))
        case nil:
            throw Unreadable(key: "kind")
        }
        guard m.present.contains("snapshot_id") else { throw Unreadable(key: "snapshot_id") }
        self.init(recordID: try string("record_id"), seq: try integer("seq"), createdAt: try string("created_at"),
                  snapshotID: try optional("snapshot_id"), content: content)
    }
}

/// A refusal: the spec's `reason` and a `detail` for people.
package struct Refusal: Sendable, Equatable, Error {
    package var reason: String
    package var detail: String?
    /// The detail is masked (issue 21 item 6): it is stored with the answer, logged and sent
    /// back; a card number or person reference in it shows its ends only.
    package init(_ reason: String, _ detail: String? = nil) {
        self.reason = reason
        self.detail = detail.map(Masking.text)
    }
}

/// A `medical_subsidy` record's fields (upload spec §1): the shared model's.
package typealias SubsidyFields = SettlementRecord.MedicalSubsidy

extension SettlementRecord.MedicalSubsidy {
    /// The records of one bill: one card write (same card, same `card_sequence`) for one
    /// `bill_reference`. A bill subsidised again after a reversal is a new write, a new bill group.
    package var billKey: BillKey { BillKey(billReference: billReference, cardNumber: cardNumber, cardSequence: cardSequence) }
}

package struct BillKey: Hashable, Sendable {
    package var billReference: String
    package var cardNumber: String
    package var cardSequence: Int64
}

/// One program's part of a bill, as a batch or the hub's store states it.
package struct BillPart: Sendable, Equatable {
    package var recordID: String
    package var billFen: Int64
    package var patientPaysFen: Int64
    package var subsidyFen: Int64

    /// One record's share of a bill.
    package init(recordID: String, billFen: Int64, patientPaysFen: Int64, subsidyFen: Int64) {
        self.recordID = recordID; self.billFen = billFen; self.patientPaysFen = patientPaysFen; self.subsidyFen = subsidyFen
    }
}

/// Upload spec §1 (what a record holds) and the pure parts of §5 (what it may say).
public enum RecordRules {
    package enum FieldType { case string, integer, boolean }

    package static let common: [(String, FieldType)] = [("record_id", .string), ("seq", .integer), ("kind", .string), ("created_at", .string)]

    package static let kinds: [String: [(String, FieldType)]] = [
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
    package static func sequence(recordID: String, deviceID: String) -> Int64? {
        let prefix = deviceID + "-"
        guard recordID.hasPrefix(prefix) else { return nil }
        let digits = recordID.utf8.dropFirst(prefix.utf8.count)
        guard let first = digits.first, first != UInt8(ascii: "0"), digits.count <= 18,
              digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(String(decoding: digits, as: UTF8.self))
    }

    /// What every record and its kind must hold (upload spec §1), checked before the
    /// content: `missing_fields`, `bad_fields`, `unknown_kind`, `bad_created_at`, `bad_record_id`.
    package static func structure(_ m: RecordMembers, recordID: String, seq: Int64) -> Refusal? {
        if !m.duplicates.isEmpty { return Refusal("bad_fields", "duplicate member " + m.duplicates.joined(separator: ",")) }
        var missing: [String] = []
        var wrong: [String] = []
        func field(_ name: String, _ type: FieldType) {
            guard m.present.contains(name) else { missing.append(name); return }
            switch (type, m.flat[name]) {
            case (.string, .string?), (.integer, .integer?), (.boolean, .bool?): break
            default: wrong.append(name)
            }
        }
        /// A member that may be a string or `null` when present.
        func stringOrNull(_ name: String) -> Bool {
            switch m.flat[name] { case .string?, .null?: return true; default: return false }
        }
        for (name, type) in common { field(name, type) }
        if !m.present.contains("snapshot_id") { missing.append("snapshot_id") } else if !stringOrNull("snapshot_id") { wrong.append("snapshot_id") }
        if !missing.isEmpty { return Refusal("missing_fields", missing.joined(separator: ",")) }
        if !wrong.isEmpty { return Refusal("bad_fields", wrong.joined(separator: ",")) }
        guard case .integer(seq)? = m.flat["seq"] else { return Refusal("bad_record_id", "seq must be the <seq> of record_id \(recordID)") }
        let kind = m.string("kind") ?? ""
        guard let fields = kinds[kind] else { return Refusal("unknown_kind", kind) }
        guard let created = m.string("created_at"), Timestamp.date(created) != nil else { return Refusal("bad_created_at", m.string("created_at")) }
        for (name, type) in fields { field(name, type) }
        if kind == "alert", m.present.contains("card_number"), !stringOrNull("card_number") { wrong.append("card_number") }
        if kind == "legal_aid_application", m.present.contains("contact_phone"), !stringOrNull("contact_phone") { wrong.append("contact_phone") }
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

    package static func amounts(_ s: SubsidyFields, bill: [BillPart]) -> Refusal? {
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
    package static func ackMessage(cardNumber: String, cardSequence: Int64, cardChallenge: String) -> [UInt8]? {
        let number = Array(cardNumber.utf8)
        guard number.count == 16, number.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              (0...Int64(UInt32.max)).contains(cardSequence), let challenge = Hex.decode(cardChallenge), challenge.count == 16 else { return nil }
        return SigningMessage.usageAcknowledgement(cardNumber: cardNumber, sequence: UInt32(cardSequence), challenge: challenge)
    }

    /// `bad_card_ack`: the record's `card_ack` verifies with the card's roster key over the
    /// acknowledgement of the write the record names.
    package static func cardAck(_ s: SubsidyFields, cardKey: [UInt8]?) -> Refusal? {
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
    package static func cardAuth(_ l: SettlementRecord.LegalAidApplication, deviceID: String, createdAt: String, cardKey: [UInt8]?) -> Refusal? {
        guard let auth = l.cardAuth, let digestText = l.cardUsageDigest else {
            return Refusal("bad_card_auth", "card_auth and card_usage_digest are required: without the card, no device files for its holder")
        }
        guard let digest = Hex.decode(digestText), digest.count == 32 else {
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
        let message = SigningMessage.cardAuthentication(cardNumber: l.cardNumber, challenge: challenge, usageDigest: digest)
        guard key.isValidSignature(signature, for: message) else {
            return Refusal("bad_card_auth", "card_auth does not verify with the key of card \(l.cardNumber) over this application")
        }
        return nil
    }

    /// Step 5: `time_suspect` when `created_at` is more than 400 days before or 10 minutes
    /// after the hub's clock.
    package static func timeSuspect(createdAt: String, now: Date) -> Bool {
        guard let created = Timestamp.date(createdAt) else { return true }
        return created < now.addingTimeInterval(-400 * 86_400) || created > now.addingTimeInterval(600)
    }


    /// A JSON integer: written without fraction or exponent, within Int64 (`1.0`, `1e3` and
    /// `true` are not integers), as the kiosk's own readers hold it (`JSONInteger`).
    package static func integer(_ v: Any?) -> Int64? { JSONInteger.value(v) }
}
