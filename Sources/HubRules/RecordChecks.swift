import Foundation
import KioskProtocol

/// What the upload rules need to know of the roster (upload spec §5 step 4), without the
/// roster's storage: `HubStore`'s `Roster` answers it.
package protocol RosterFacts: Sendable {
    /// The program's card type (`medical`, `legal_aid`) and limit, or nil when unknown.
    func program(_ code: String) -> (cardType: String, limitFen: Int64?)?
    /// The card's person and roster key, or nil when unknown.
    func card(_ number: String) -> (personRef: String, publicKey: [UInt8]?)?
}

/// What the upload rules need to know of the records already stored (this batch's earlier
/// records included), as questions: `HubStore` answers them with SQL, a test with a list.
package protocol StoredFacts {
    /// The stored parts of a bill: this device's records of the same card write.
    func billParts(billReference: String, deviceID: String, cardNumber: String, cardSequence: Int64) throws -> [BillPart]
    /// A stored subsidy of another bill acknowledged by the same card write, if any.
    func ackUsedForAnotherBill(cardNumber: String, cardSequence: Int64, deviceID: String, billReference: String) throws -> String?
    /// Another device that used this bill of this institution, if any.
    func billUsedByAnotherDevice(billReference: String, institution: String, deviceID: String) throws -> String?
    /// The stored record `recordID`: its kind and subsidy, or nil.
    func reversalTarget(_ recordID: String) throws -> (kind: String, subsidyFen: Int64?)?
    /// The record that already reversed `recordID`, if any.
    func reversedBy(_ recordID: String) throws -> String?
    /// The bodies of the stored legal-aid applications of a card.
    func legalAidBodies(cardNumber: String) throws -> [String]
}

/// Upload spec §5 steps 3–5 for one record, as pure rules: a record and the facts in, a typed
/// decision out (`Decision`). No SQL: the facts are asked through `StoredFacts` and
/// `RosterFacts`.
package struct RecordChecks {
    /// The device that sent the batch.
    package let deviceID: String
    /// Its institution in the roster.
    package let institution: String?
    /// Applications without the card's consent made before this instant are accepted with the
    /// flag `no_card_auth`; after it (and always when nil) they are `bad_card_auth`.
    package let consentStart: Date?
    /// This batch's subsidies by bill, for the parts not stored yet.
    package let batchBills: [BillKey: [BillPart]]

    /// Checks for the records of `deviceID`.
    package init(deviceID: String, institution: String?, consentStart: Date?, batchBills: [BillKey: [BillPart]]) {
        self.deviceID = deviceID; self.institution = institution; self.consentStart = consentStart; self.batchBills = batchBills
    }

    /// What the hub decides for one record.
    package enum Decision: Equatable {
        /// Stored, with these flags (step 5).
        case accept(flags: [String])
        /// Refused for good, with why.
        case refuse(Refusal)
    }

    /// Whether `r` is a legal-aid application without consent, made before the consent start.
    package func beforeConsent(_ r: IncomingRecord) -> Bool {
        guard let record = r.record, let l = record.legalAidApplication, l.cardAuth == nil, l.cardUsageDigest == nil,
              let start = consentStart, let created = Timestamp.date(record.createdAt) else { return false }
        return created < start
    }

    /// Step 3 (order), the record's structure, step 4 (its content), then step 5's flags.
    /// - Parameter cardAck: `RecordRules.cardAck` of a `medical_subsidy`, verified beforehand.
    package func decide(_ r: IncomingRecord, lastSeq: Int64, subsidy: SubsidyFields?, cardAck: Refusal?,
                        roster: some RosterFacts, stored: some StoredFacts, now: Date) throws -> Decision {
        if r.seq != lastSeq + 1 { return .refuse(Refusal("seq_gap", "expected seq \(lastSeq + 1), got \(r.seq)")) }
        if let broken = r.structureRefusal { return .refuse(broken) }
        if let refusal = try content(r, subsidy: subsidy, cardAck: cardAck, roster: roster, stored: stored) { return .refuse(refusal) }
        return .accept(flags: flags(r, subsidy: subsidy, roster: roster, now: now))
    }

    /// Whether the content check of `r` reads stored records (the caller writes what it holds first).
    package static func readsStored(_ r: IncomingRecord) -> Bool {
        r.record?.medicalSubsidy != nil || r.record?.subsidyReversal != nil || r.record?.legalAidApplication != nil
    }

    /// The first failing content check's refusal, in the spec's order, or nil.
    func content(_ r: IncomingRecord, subsidy: SubsidyFields?, cardAck: Refusal?, roster: some RosterFacts,
                 stored: some StoredFacts) throws -> Refusal? {
        guard let record = r.record else { return r.structureRefusal ?? Refusal("bad_fields") }
        switch record.content {
        case .medicalSubsidy:
            guard let s = subsidy else { return Refusal("bad_fields") }
            return try medical(s, cardAck: cardAck, roster: roster, stored: stored)
        case .subsidyReversal(let reversal):
            return try self.reversal(reversal, stored: stored)
        case .legalAidApplication(let application):
            return try legalAid(r, application, createdAt: record.createdAt, roster: roster, stored: stored)
        case .alert:
            return nil
        }
    }

    /// A `medical_subsidy`: amounts against its bill, program, card, acknowledgement, institution, bill.
    func medical(_ s: SubsidyFields, cardAck: Refusal?, roster: some RosterFacts, stored: some StoredFacts) throws -> Refusal? {
        if let bad = RecordRules.amounts(s, bill: try bill(s, stored: stored)) { return bad }
        guard roster.program(s.program)?.cardType == "medical" else {
            return Refusal("unknown_program", "\(s.program) is not a medical program of the roster")
        }
        guard roster.card(s.cardNumber)?.personRef == s.personRef else {
            return Refusal("unknown_card", "card \(s.cardNumber) is not in the roster under person_ref \(s.personRef)")
        }
        if let bad = cardAck { return bad }
        // One card write acknowledges one bill: an acknowledgement replayed for another bill is no card in the reader.
        if let used = try stored.ackUsedForAnotherBill(cardNumber: s.cardNumber, cardSequence: s.cardSequence, deviceID: deviceID,
                                                       billReference: s.billReference) {
            return Refusal("bad_card_ack", "the write \(s.cardSequence) of card \(s.cardNumber) was acknowledged for another bill (\(used))")
        }
        guard let institution, institution == s.institution else {
            return Refusal("wrong_institution", "\(s.institution) is not the institution of \(deviceID)")
        }
        if let other = try stored.billUsedByAnotherDevice(billReference: s.billReference, institution: institution, deviceID: deviceID) {
            return Refusal("duplicate_bill", "bill \(s.billReference) of \(institution) was already used by \(other)")
        }
        return nil
    }

    /// A `subsidy_reversal`: its amount, its target (a stored subsidy of this device, not reversed yet).
    func reversal(_ reversal: SettlementRecord.SubsidyReversal, stored: some StoredFacts) throws -> Refusal? {
        let reverses = reversal.reverses, amount = reversal.amountFen
        guard (0...RecordRules.maximumBillFen).contains(amount) else {
            return Refusal("bad_amounts", "amount_fen is not 0–\(RecordRules.maximumBillFen)")
        }
        guard RecordRules.sequence(recordID: reverses, deviceID: deviceID) != nil else {
            return Refusal("bad_reversal", "\(reverses) is not a record of \(deviceID)")
        }
        guard let target = try stored.reversalTarget(reverses), target.kind == "medical_subsidy" else {
            return Refusal("bad_reversal", "no medical_subsidy \(reverses) is stored")
        }
        if let by = try stored.reversedBy(reverses) {
            return Refusal("bad_reversal", "\(reverses) was already reversed by \(by)")
        }
        let subsidy = target.subsidyFen ?? 0
        guard amount == subsidy else {
            return Refusal("bad_reversal", "amount_fen \(amount) is not the subsidy_fen \(subsidy) of \(reverses)")
        }
        return nil
    }

    /// A `legal_aid_application`: program, card, and the card's consent, used once.
    func legalAid(_ r: IncomingRecord, _ application: SettlementRecord.LegalAidApplication, createdAt: String,
                  roster: some RosterFacts, stored: some StoredFacts) throws -> Refusal? {
        let code = application.program
        guard roster.program(code)?.cardType == "legal_aid" else {
            return Refusal("unknown_program", "\(code) is not a legal-aid program of the roster")
        }
        let number = application.cardNumber, ref = application.personRef
        guard let card = roster.card(number), card.personRef == ref else {
            return Refusal("unknown_card", "card \(number) is not in the roster under person_ref \(ref)")
        }
        if beforeConsent(r) { return nil }
        if let refusal = RecordRules.cardAuth(application, deviceID: deviceID, createdAt: createdAt, cardKey: card.publicKey) {
            return refusal
        }
        // A consent is good for one application: the same card_auth stored before is refused.
        for text in try stored.legalAidBodies(cardNumber: number)
        where (try? SettlementRecord(json: text))?.legalAidApplication?.cardAuth == application.cardAuth {
            return Refusal("bad_card_auth", "this card_auth is already stored with another application")
        }
        return nil
    }

    /// The parts of `s`'s bill: those stored (this device's, the same card write) and those in this batch.
    func bill(_ s: SubsidyFields, stored: some StoredFacts) throws -> [BillPart] {
        var parts = try stored.billParts(billReference: s.billReference, deviceID: deviceID, cardNumber: s.cardNumber, cardSequence: s.cardSequence)
        let known = Set(parts.map(\.recordID))
        parts += (batchBills[s.billKey] ?? []).filter { !known.contains($0.recordID) }
        return parts
    }

    /// Step 5: `over_limit`, `time_suspect`, `no_card_auth`.
    func flags(_ r: IncomingRecord, subsidy: SubsidyFields?, roster: some RosterFacts, now: Date) -> [String] {
        var flags: [String] = []
        if let s = subsidy, let limit = roster.program(s.program)?.limitFen, s.usedAfterFen > limit { flags.append("over_limit") }
        if RecordRules.timeSuspect(createdAt: r.record?.createdAt ?? "", now: now) { flags.append("time_suspect") }
        if beforeConsent(r) { flags.append("no_card_auth") }
        return flags
    }
}
