import Foundation

/// The kinds of settlement record (upload spec §1).
public enum RecordKind: String, Codable, Sendable, CaseIterable {
    /// One program's part of one bill (`medical_subsidy`).
    case medicalSubsidy = "medical_subsidy"
    /// A subsidy taken back (`subsidy_reversal`).
    case subsidyReversal = "subsidy_reversal"
    /// A legal-aid application filed with the card (`legal_aid_application`).
    case legalAidApplication = "legal_aid_application"
    /// Something the technician and the platform should know (`alert`).
    case alert
}

/// A settlement record (upload spec §1): the one model the kiosk's ledger writes, its
/// receipt desk prints from and the hub stores. Encoded as one flat JSON object, the common
/// fields beside the kind's own; `snapshot_id` is always present (`null` when none).
///
/// Decoding checks types and presence (a missing or mistyped field throws `DecodingError`).
/// What JSON numbers count as integers is stricter in the hub's own structure check (upload
/// spec §5: `1.0` is not an integer), which runs on the raw object before this model is read.
public struct SettlementRecord: Codable, Sendable, Equatable {
    /// `<device_id>-<seq>`.
    public var recordID: String
    /// The device's gapless record sequence number.
    public var seq: Int64
    /// When the record was made: RFC 3339 UTC text as written (`created_at`).
    public var createdAt: String
    /// The snapshot installed when the record was made; nil before the first.
    public var snapshotID: String?
    /// The kind's own fields.
    public var content: Content

    /// The record's kind, from its content.
    public var kind: RecordKind { content.kind }

    /// A record from its common fields and content.
    public init(recordID: String, seq: Int64, createdAt: String, snapshotID: String?, content: Content) {
        self.recordID = recordID
        self.seq = seq
        self.createdAt = createdAt
        self.snapshotID = snapshotID
        self.content = content
    }

    /// What the record says, by kind.
    public enum Content: Sendable, Equatable {
        /// The fields of a `medical_subsidy`.
        case medicalSubsidy(MedicalSubsidy)
        /// The fields of a `subsidy_reversal`.
        case subsidyReversal(SubsidyReversal)
        /// The fields of a `legal_aid_application`.
        case legalAidApplication(LegalAidApplication)
        /// The fields of an `alert`.
        case alert(Alert)

        /// The kind of record this content makes.
        public var kind: RecordKind {
            switch self {
            case .medicalSubsidy: return .medicalSubsidy
            case .subsidyReversal: return .subsidyReversal
            case .legalAidApplication: return .legalAidApplication
            case .alert: return .alert
            }
        }
    }

    /// One program's part of one bill, for one card write.
    public struct MedicalSubsidy: Codable, Sendable, Equatable {
        /// The card written (16 digits).
        public var cardNumber: String
        /// The card's person reference (32 lowercase hex digits).
        public var personRef: String
        /// The program code.
        public var program: String
        /// The period the subsidy counts in (the China Standard Time year, `"2026"`).
        public var period: String
        /// The bill's reference, the same on every record of the bill.
        public var billReference: String
        /// The whole bill, in fen.
        public var billFen: Int64
        /// This program's subsidy, in fen.
        public var subsidyFen: Int64
        /// What the patient pays of the whole bill, in fen.
        public var patientPaysFen: Int64
        /// The program's usage this period before this subsidy, in fen.
        public var usedBeforeFen: Int64
        /// The program's usage this period after this subsidy, in fen.
        public var usedAfterFen: Int64
        /// The sequence (`DF43`) of the EF.USAGE record the card acknowledged.
        public var cardSequence: Int64
        /// `DF48`, 32 lowercase hex digits.
        public var cardChallenge: String
        /// The card's acknowledgement (card spec §5.4), base64.
        public var cardAck: String
        /// The institution code the device was provisioned with (`330782-H01`).
        public var institution: String

        /// A subsidy record's fields; amounts in fen.
        public init(cardNumber: String, personRef: String, program: String, period: String, billReference: String, billFen: Int64,
                    subsidyFen: Int64, patientPaysFen: Int64, usedBeforeFen: Int64, usedAfterFen: Int64, cardSequence: Int64,
                    cardChallenge: String, cardAck: String, institution: String) {
            self.cardNumber = cardNumber; self.personRef = personRef; self.program = program; self.period = period
            self.billReference = billReference; self.billFen = billFen; self.subsidyFen = subsidyFen; self.patientPaysFen = patientPaysFen
            self.usedBeforeFen = usedBeforeFen; self.usedAfterFen = usedAfterFen; self.cardSequence = cardSequence
            self.cardChallenge = cardChallenge; self.cardAck = cardAck; self.institution = institution
        }

        enum CodingKeys: String, CodingKey {
            case cardNumber = "card_number", personRef = "person_ref", program, period, billReference = "bill_reference"
            case billFen = "bill_fen", subsidyFen = "subsidy_fen", patientPaysFen = "patient_pays_fen"
            case usedBeforeFen = "used_before_fen", usedAfterFen = "used_after_fen", cardSequence = "card_sequence"
            case cardChallenge = "card_challenge", cardAck = "card_ack", institution
        }
    }

    /// A mistaken subsidy taken back, whole.
    public struct SubsidyReversal: Codable, Sendable, Equatable {
        /// The `record_id` of the `medical_subsidy` reversed.
        public var reverses: String
        /// The amount taken back, in fen.
        public var amountFen: Int64
        /// Why, in the operator's words.
        public var reason: String
        /// Who reversed it.
        public var `operator`: String

        /// A reversal of the subsidy `reverses` names; the amount in fen.
        public init(reverses: String, amountFen: Int64, reason: String, operator op: String) {
            self.reverses = reverses; self.amountFen = amountFen; self.reason = reason; self.operator = op
        }

        enum CodingKeys: String, CodingKey { case reverses, amountFen = "amount_fen", reason, `operator` }
    }

    /// A legal-aid application filed with the card.
    public struct LegalAidApplication: Codable, Sendable, Equatable {
        /// The card that filed it (16 digits).
        public var cardNumber: String
        /// The card's person reference (32 lowercase hex digits).
        public var personRef: String
        /// The legal-aid program code.
        public var program: String
        /// The matter code.
        public var matter: String
        /// Priority handling (the receipt's priority note); true unless given otherwise.
        public var priority: Bool
        /// A phone number to call back; nil when none was given.
        public var contactPhone: String?
        /// The card's consent (upload spec §1, amendment 2026-12-06): the SHA-256 of the EF.USAGE
        /// object the card signed over (of `72 00` for a legal-aid card), 64 lowercase hex digits.
        public var cardUsageDigest: String?
        /// Base64 of the card's 64-byte INTERNAL AUTHENTICATE answer over the challenge
        /// `consentPreimage` hashes to.
        public var cardAuth: String?

        /// An application's fields; the consent (`cardUsageDigest`, `cardAuth`) nil until the card has answered.
        public init(cardNumber: String, personRef: String, program: String, matter: String, priority: Bool = true, contactPhone: String? = nil,
                    cardUsageDigest: String? = nil, cardAuth: String? = nil) {
            self.cardNumber = cardNumber; self.personRef = personRef; self.program = program; self.matter = matter
            self.priority = priority; self.contactPhone = contactPhone; self.cardUsageDigest = cardUsageDigest; self.cardAuth = cardAuth
        }

        enum CodingKeys: String, CodingKey {
            case cardNumber = "card_number", personRef = "person_ref", program, matter, priority, contactPhone = "contact_phone"
            case cardUsageDigest = "card_usage_digest", cardAuth = "card_auth"
        }

        /// The bytes whose SHA-256 is the INTERNAL AUTHENTICATE challenge of the card's consent:
        /// "LEGAL-AID-V2", then for each of device_id, card_number, person_ref, program, matter,
        /// contact_phone ("" when absent) and created_at, 0x00 and the field's UTF-8 bytes,
        /// exactly as the record carries them (`vectors/legal-aid-consent.json`).
        public func consentPreimage(deviceID: String, createdAt: String) -> [UInt8] {
            var out = Array("LEGAL-AID-V2".utf8)
            for field in [deviceID, cardNumber, personRef, program, matter, contactPhone ?? "", createdAt] {
                out.append(0)
                out += Array(field.utf8)
            }
            return out
        }
    }

    /// Something the technician and the platform should know.
    public struct Alert: Codable, Sendable, Equatable {
        /// The alert code (`card_not_authentic`, `printer_fault`, …: upload spec §1).
        public var code: String
        /// The card concerned; nil when none is.
        public var cardNumber: String?
        /// What happened, in words.
        public var detail: String
        /// Who acted, for alerts that record a technician's action (`clock_reset`).
        public var `operator`: String?

        /// An alert from its fields.
        public init(code: String, cardNumber: String? = nil, detail: String, operator op: String? = nil) {
            self.code = code; self.cardNumber = cardNumber; self.detail = detail; self.operator = op
        }

        enum CodingKeys: String, CodingKey { case code, cardNumber = "card_number", detail, `operator` }
    }

    enum CodingKeys: String, CodingKey {
        case recordID = "record_id", seq, kind, createdAt = "created_at", snapshotID = "snapshot_id"
    }

    /// Reads the flat object; a missing or mistyped field, `snapshot_id` included, throws `DecodingError`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        recordID = try c.decode(String.self, forKey: .recordID)
        seq = try c.decode(Int64.self, forKey: .seq)
        createdAt = try c.decode(String.self, forKey: .createdAt)
        // Present, a string or null (upload spec §1: "the snapshot installed", none before the first).
        guard c.contains(.snapshotID) else {
            throw DecodingError.keyNotFound(CodingKeys.snapshotID, .init(codingPath: c.codingPath, debugDescription: "snapshot_id is missing"))
        }
        snapshotID = try c.decodeNil(forKey: .snapshotID) ? nil : c.decode(String.self, forKey: .snapshotID)
        switch try c.decode(RecordKind.self, forKey: .kind) {
        case .medicalSubsidy: content = .medicalSubsidy(try MedicalSubsidy(from: decoder))
        case .subsidyReversal: content = .subsidyReversal(try SubsidyReversal(from: decoder))
        case .legalAidApplication: content = .legalAidApplication(try LegalAidApplication(from: decoder))
        case .alert: content = .alert(try Alert(from: decoder))
        }
    }

    /// Writes the flat object, `snapshot_id` as `null` when there is none.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(recordID, forKey: .recordID)
        try c.encode(seq, forKey: .seq)
        try c.encode(kind, forKey: .kind)
        try c.encode(createdAt, forKey: .createdAt)
        if let snapshotID { try c.encode(snapshotID, forKey: .snapshotID) } else { try c.encodeNil(forKey: .snapshotID) }
        switch content {
        case .medicalSubsidy(let m): try m.encode(to: encoder)
        case .subsidyReversal(let r): try r.encode(to: encoder)
        case .legalAidApplication(let l): try l.encode(to: encoder)
        case .alert(let a): try a.encode(to: encoder)
        }
    }

    /// The record as stored and uploaded: compact JSON, keys sorted, `/` not escaped (byte for
    /// byte what `JSONEncoder` writes with those options: `CompactJSON`).
    public func json() throws -> String { try CompactJSON.string(self) }

    /// A record read from its JSON body.
    public init(json: some Collection<UInt8>) throws {
        self = try JSONDecoder().decode(SettlementRecord.self, from: Data(json))
    }

    /// A record read from its JSON text.
    public init(json: String) throws { try self.init(json: Array(json.utf8)) }

    /// The subsidy's fields; nil for another kind.
    public var medicalSubsidy: MedicalSubsidy? { if case .medicalSubsidy(let m) = content { return m } else { return nil } }
    /// The reversal's fields; nil for another kind.
    public var subsidyReversal: SubsidyReversal? { if case .subsidyReversal(let r) = content { return r } else { return nil } }
    /// The application's fields; nil for another kind.
    public var legalAidApplication: LegalAidApplication? { if case .legalAidApplication(let l) = content { return l } else { return nil } }
    /// The alert's fields; nil for another kind.
    public var alert: Alert? { if case .alert(let a) = content { return a } else { return nil } }
}
