import BenefitCard
import Crypto
import KioskProtocol
import Foundation
import KioskStore
import Logging
import SmartCard

/// The card as presented: read, authenticated, its pending deductions resolved.
public struct PresentedCard {
    /// The card's session, still open: a write or INTERNAL AUTHENTICATE goes through it.
    public var session: CardSession
    /// What was read (EF.HOLDER, EF.USAGE), updated when resolving a pending deduction wrote the card.
    public var readout: CardReadout
    /// What the decision needs of the card: number, type, category, expiry, C and a clock ahead.
    public var facts: CardFacts
    /// The platform's person reference (card `DF2A`): the only key to the person.
    public var personRef: String { readout.holder.personRef }
    /// Whether EF.USAGE's `DF46` verifies with a device key the snapshot knows (card spec §5.5);
    /// nil when the card holds no usage record.
    public var usageTrust: UsageTrust?
    /// What this device allows now (sync spec §5–6): subsidies only.
    public var standing: DeviceStanding
    /// The current period (calendar year, China Standard Time) at presentation.
    public var period: String
    /// What resolving this card's pending deductions did (card spec §6 step 6).
    public var resolved: [(deductionID: Int64, committed: Bool)]
    /// The snapshot's view read with the presentation; nil when resolving changed the
    /// ledger (the view is then read again) or there is no snapshot.
    var view: SnapshotView?
}

/// A decision that stopped before the snapshot (card-level): the code and why.
public struct CardRefusal: Error {
    /// The decision code (`card_unreadable`, `card_not_authentic`, `card_removed`, …).
    public var code: ReasonCode
    /// Why, in one line.
    public var detail: String
    /// The card concerned; nil when it could not be read.
    public var cardNumber: String?
}

/// A status check's result: the card and its standing per program.
public struct CheckOutcome {
    /// The card as presented.
    public var card: PresentedCard
    /// The status decision (snapshot spec §3–4).
    public var decision: StatusDecision
}

/// What `Kiosk.charge` did with a bill: the decision and, when granted, what was written and recorded.
public struct ChargeOutcome {
    /// The card as presented.
    public var card: PresentedCard
    /// The subsidy decision (granted with its allocations, or the refusal's code).
    public var decision: SubsidyDecision
    /// The settlement records made (granted only).
    public var records: [StoredRecord]
    /// The card sequence written (granted only).
    public var cardSequence: UInt32?
    /// The card's answer to a refused write (card_write_refused): the command and status word.
    public var writeRefusal: (command: WriteCommand, status: StatusWord)?
    /// The bill was already subsidised for this card (a torn write resolved when the card was
    /// presented again, or the hospital system sending the bill twice): `records` are the
    /// ones it made then, and nothing new was written or recorded.
    public var alreadySubsidised = false
    /// A pre-settlement (issue 20): the decision was computed and nothing was written.
    public var previewOnly = false
    /// The patient confirmed other figures than these (the snapshot or the card changed in
    /// between): nothing was written; show these and ask again.
    public var figuresChanged = false
}

/// How far `Kiosk.charge` goes (issue 20: nothing is written before the patient confirms).
public enum ChargeStep: Sendable, Equatable {
    /// Read, authenticate and decide; write nothing (the pre-settlement on the screen).
    case preview
    /// Write, but only when the decision still gives exactly these allocations (what the
    /// patient saw when pressing 确认); nil: whatever it gives (the technician's `kioskctl charge`).
    case write(confirmed: [Allocation]?)
}

/// What `Kiosk.applyLegalAid` did: the card, its standing and the application's record.
public struct LegalAidOutcome {
    /// The card as presented.
    public var card: PresentedCard
    /// The card's standing; refused when the matter is not covered or the daily limit is reached.
    public var decision: StatusDecision
    /// The application's record; nil when nothing was filed.
    public var record: StoredRecord?
}

/// One card session end to end (card spec §6), shared by the daemon and the command line.
public final class Kiosk {
    /// The provisioned device: its key, certificate and store.
    public let device: Device
    /// The clock every decision and record reads.
    public let clock: KioskClock
    var challenges: any ChallengeSource
    let logger: Logger

    /// A kiosk for `device`; `challenges` gives each session's INTERNAL AUTHENTICATE challenge
    /// (card spec §4).
    public init(device: Device, clock: KioskClock = .system, challenges: any ChallengeSource = SystemChallengeSource(),
                logger: Logger = Logger(label: "kiosk")) {
        self.device = device
        self.clock = clock
        self.challenges = challenges
        self.logger = logger
    }

    var store: KioskStore { device.store }

    /// A certificate that runs out within this many days is warned about (kioskd, kioskctl).
    public static let certificateWarningDays = 30

    /// Why this device may not grant now (`device_retired`, sync spec §5), or nil.
    public func retirement(ownDeviceStatus: String?, snapshotInstalled: Bool, now: Date) -> String? {
        guard let cert = device.certificate else { return "no device certificate is installed (kioskctl certificate install)" }
        if now < cert.notBefore { return "the device certificate is not valid before \(cert.validFrom)" }
        if now >= cert.notAfter { return "the device certificate ran out on \(cert.validThrough)" }
        if snapshotInstalled {
            switch ownDeviceStatus {
            case nil: return "this device (\(device.config.deviceID)) is not in the installed snapshot"
            case "active"?: break
            case let s?: return "this device is \(s) in the installed snapshot"
            }
        }
        return nil
    }

    /// The certificate's remaining days when fewer than 30 are left (a warning), else nil.
    public func certificateWarning(now: Date) -> String? {
        guard let cert = device.certificate else { return "no device certificate is installed: no subsidies (device_retired)" }
        let left = cert.notAfter.timeIntervalSince(now) / 86_400
        guard left < Double(Kiosk.certificateWarningDays) else { return nil }
        if left <= 0 { return "the device certificate ran out on \(cert.validThrough): no subsidies (device_retired)" }
        return "the device certificate runs out on \(cert.validThrough) (in \(Int(left.rounded(.up))) days): renew it"
    }

    /// The clock against the floor (sync spec §6). The alert is raised once when the clock
    /// turns suspect; the mark is cleared when it reads sensibly again.
    func clockSuspicion(_ floor: ClockFloor, now: Date) -> String? {
        if let why = floor.suspicion(at: now) {
            if floor.suspectSince == nil {
                if (try? store.noteClockSuspect(now: now, device: device.context, detail: why)) == true {
                    logger.error("device clock suspect", metadata: ["now": "\(Timestamp.string(now))", "floor": "\(floor.floor.map(Timestamp.string) ?? "")"])
                }
            }
            return why
        }
        if floor.suspectSince != nil { try? store.noteClockSensible() }
        return nil
    }

    /// Reads and authenticates the card, raises alerts, and resolves its pending deductions.
    /// Card-level failures throw `CardRefusal` with their decision code.
    public func present(_ channel: CardChannel) throws -> PresentedCard {
        let now = clock.now()
        let session = CardSession(channel: channel)
        var readout: CardReadout
        do { readout = try session.read() } catch let e as CardError {
            throw refusal(for: e, cardNumber: nil)
        }
        let number = readout.holder.cardNumber
        let verdict: Authenticity
        do {
            var c = challenges
            verdict = try session.authenticate(readout, trust: TrustStore(issuerKeys: device.trustedIssuers), challenges: &c)
            challenges = c
        } catch let e as CardError { throw refusal(for: e, cardNumber: number) }
        if case .notAuthentic(let why) = verdict {
            try store.recordAlert(device: device.context, code: "card_not_authentic", cardNumber: number, detail: why.description, now: now)
            logger.warning("card not authentic", metadata: ["card": "\(Masking.cardNumber(number))", "reason": "\(why.code)"])
            throw CardRefusal(code: .cardNotAuthentic, detail: why.description, cardNumber: number)
        }
        let period = KioskProtocol.Period.of(now)
        // Everything the store says about this card, in one read.
        let stored = try store.presentation(cardNumber: number, period: period, deviceID: device.config.deviceID)
        var trust: UsageTrust?
        if let usage = readout.usage {
            var keys = stored.deviceKeys.compactMapValues { Data(base64Encoded: $0).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) } }
            keys[device.config.deviceID] = device.signingKey.publicKey
            trust = usage.trust(cardNumber: number, deviceKeys: keys)
            if case .untrusted = trust {
                try store.recordAlert(device: device.context, code: "usage_record_untrusted", cardNumber: number, detail: trust!.description, now: now)
            }
        }
        let standing = DeviceStanding(retired: retirement(ownDeviceStatus: stored.ownDeviceStatus, snapshotInstalled: stored.snapshotInstalled, now: now),
                                      clockSuspect: clockSuspicion(stored.clockFloor, now: now))
        let resolved = try resolvePending(stored.pending, session: session, readout: &readout, standing: standing, now: now)
        // Card spec §5.5: a card whose time is ahead of this terminal's refuses that card only.
        var clockAhead: String?
        if let body = readout.usage?.body {
            if body.period > period {
                clockAhead = "the card's usage record is of period \(body.period), later than this device's \(period)"
            } else if let written = readout.usage?.writtenAtDate, written > now.addingTimeInterval(ClockFloor.tolerance) {
                clockAhead = "the card was written at \(body.writtenAt), more than 10 minutes after this device's clock \(Timestamp.string(now))"
            }
            if let why = clockAhead {
                try store.recordAlert(device: device.context, code: "clock_suspect", cardNumber: number, detail: why, now: now)
                logger.warning("card time ahead", metadata: ["card": "\(Masking.cardNumber(number))", "why": "\(why)"])
            }
        }
        let cardUsed = (readout.usage?.body?.period == period ? readout.usage!.body!.entries : []).map { ($0.program, $0.usedFen) }
        let facts = CardFacts(cardNumber: number, kind: readout.type == .medical ? .medical : .legalAid,
                              category: readout.holder.category.codeString, expired: readout.holder.isExpired(at: now),
                              cardUsedFen: Dictionary(cardUsed, uniquingKeysWith: { max($0, $1) }), clockAhead: clockAhead)
        return PresentedCard(session: session, readout: readout, facts: facts, usageTrust: trust, standing: standing,
                             period: period, resolved: resolved, view: resolved.isEmpty ? stored.view : nil)
    }

    func refusal(for e: CardError, cardNumber: String?) -> CardRefusal {
        switch e {
        case .cardRemoved: return CardRefusal(code: .cardRemoved, detail: e.description, cardNumber: cardNumber)
        case .writeRefused: return CardRefusal(code: .cardWriteRefused, detail: e.description, cardNumber: cardNumber)
        default: return CardRefusal(code: .cardUnreadable, detail: e.description, cardNumber: cardNumber)
        }
    }

    /// Card spec §6 step 7: a pending deduction is committed when the card holds exactly the
    /// record this device meant to write, voided otherwise. Exactly once.
    ///
    /// The card acknowledges a write only in the UPDATE BINARY's answer (§5.4), which a torn
    /// write lost. When the record is found on the card, the terminal fetches an
    /// acknowledgement with a confirming write in this session (the same period and amounts,
    /// sequence + 1, a fresh challenge) and commits with it; when that fails, the deduction is
    /// still committed (the card holds it: L must count it) with an empty `card_ack` and an
    /// alert, for the platform's operators. `readout` is updated to what the card then holds.
    func resolvePending(_ pending: [Deduction], session: CardSession, readout: inout CardReadout, standing: DeviceStanding,
                        now: Date) throws -> [(deductionID: Int64, committed: Bool)] {
        var out: [(Int64, Bool)] = []
        for d in pending {
            let written = readout.usage?.object == d.usageObject
            if written {
                var ack: (ack: [UInt8], sequence: UInt32, challenge: [UInt8], writtenAt: Date, object: [UInt8])?
                var why = "no acknowledgement"
                if standing.retired == nil, standing.clockSuspect == nil, let usage = readout.usage {
                    do {
                        ack = try confirm(usage, session: session, cardNumber: readout.holder.cardNumber, cardKey: readout.holder.cardPublicKey, now: now)
                        readout.usage = try UsageRecord(fileBytes: ack!.object)
                    } catch let e as CardError {
                        why = e.description
                        if case .writeRefused = e {} else if let fresh = try? session.readFile(sfi: 0x03).flatMap({ try? UsageRecord(fileBytes: $0) }) {
                            // Unknown whether the confirming record landed: read what the card
                            // holds now. Either way its amounts are the pending record's.
                            readout.usage = fresh
                        }
                    }
                } else {
                    why = "this device may not write now (\(standing.retired ?? standing.clockSuspect ?? ""))"
                }
                try store.commitDeduction(d.id, device: device.context, ack: ack?.ack, cardSequence: ack?.sequence, cardChallenge: ack?.challenge,
                                          cardWrittenAt: ack?.writtenAt, now: clock.now(),
                                          resolution: "found on the card when presented again" + (ack == nil ? "; no acknowledgement: \(why)" : "; acknowledged by a confirming write"))
                if ack == nil {
                    try store.recordAlert(device: device.context, code: "card_ack_missing", cardNumber: d.cardNumber,
                                          detail: "deduction \(d.id) found on the card without the card's acknowledgement: \(why)", now: clock.now())
                }
            } else {
                try store.voidDeduction(d.id, now: clock.now(), resolution: "not on the card when presented again (card sequence \(readout.usage?.sequence ?? 0))")
            }
            logger.notice("pending deduction resolved", metadata: ["deduction": "\(d.id)", "committed": "\(written)"])
            out.append((d.id, written))
        }
        return out
    }

    /// A confirming write: the card's own record again with sequence + 1 (nothing changes but
    /// the sequence, the time and the challenge), for its acknowledgement.
    func confirm(_ usage: UsageRecord, session: CardSession, cardNumber: String, cardKey: [UInt8], now: Date) throws
        -> (ack: [UInt8], sequence: UInt32, challenge: [UInt8], writtenAt: Date, object: [UInt8]) {
        guard let body = usage.body, let cert = device.certificate else { throw CardError.writeRefused(.verifyCertificate, StatusWord(0x6982)) }
        let writtenAt = max(now, usage.writtenAtDate ?? now)
        try session.verifyCertificate(cert)
        let challenge = try session.getChallenge()
        let (sequence, entries) = try usage.next(period: body.period, setting: [])
        let object = try UsageRecord.encode(cardNumber: cardNumber, period: body.period, sequence: sequence, terminalID: device.config.deviceID,
                                            writtenAt: writtenAt, entries: entries, challenge: challenge, signer: device.signingKey)
        let ack = try session.writeUsage(object, cardNumber: cardNumber, sequence: sequence, challenge: challenge, cardPublicKey: cardKey)
        return (ack, sequence, challenge, writtenAt, object)
    }

    /// A status check.
    public func check(_ channel: CardChannel) throws -> CheckOutcome {
        let card = try present(channel)
        let view = try card.view ?? store.view(cardNumber: card.facts.cardNumber, period: card.period)
        return CheckOutcome(card: card, decision: Decide.status(card: card.facts, view: view, now: clock.now()))
    }

    /// The card's programs as the store sees them now (after a subsidy: the used-after
    /// figures, since the committed subsidy counts in L), without talking to the card again.
    public func standing(of card: PresentedCard) throws -> StatusDecision {
        let view = try store.view(cardNumber: card.facts.cardNumber, period: card.period)
        return Decide.status(card: card.facts, view: view, now: clock.now())
    }

    /// The most a bill may be: 99,999,999 fen (receipt spec §1).
    public static let maximumBillFen: Fen = 99_999_999

    /// A hospital bill: decide, certificate + challenge, pending, write the card, check the
    /// card's acknowledgement, commit + queue (card spec §6).
    ///
    /// - Parameters:
    ///   - patient: the bill's patient (`PatientIdentity.digest`), when the hospital system
    ///     named one: another holder's card is refused `wrong_patient` right after it is
    ///     authenticated, before any figure is computed.
    ///   - step: `.preview` decides and writes nothing; `.write` writes (see `ChargeStep`).
    ///   - cardNumber: the card the patient confirmed for: any other card on the reader is
    ///     refused (`card_removed`) before anything is written.
    public func charge(_ channel: CardChannel, billFen: Fen, billReference: String, patient: [UInt8]? = nil,
                       step: ChargeStep = .write(confirmed: nil), cardNumber: String? = nil) throws -> ChargeOutcome {
        try BillError.check(billFen: billFen, billReference: billReference)
        let card = try present(channel)
        try checkChargedCard(card, cardNumber: cardNumber, patient: patient)
        let now = clock.now()
        if let done = try alreadyCharged(billReference: billReference, card: card) { return done }
        // The write path (beginDeduction) reads the figures again inside its transaction.
        let view = try card.view ?? store.view(cardNumber: card.facts.cardNumber, period: card.period)
        var decision = Decide.subsidy(card: card.facts, view: view, billFen: billFen, now: now, device: card.standing)
        guard decision.isGranted, let usage = card.readout.usage else {
            return ChargeOutcome(card: card, decision: decision, records: [], cardSequence: nil)
        }
        if let unwritten = unwrittenCharge(step: step, card: card, decision: decision, billReference: billReference) { return unwritten }
        // §5.5: the new DF45 is the later of this clock and the card's (at most 10 minutes
        // ahead, else clock_suspect above); the card refuses a date past the certificate.
        let writtenAt = max(now, usage.writtenAtDate ?? now)
        guard let cert = device.certificate, writtenAt < cert.notAfter else {
            decision = SubsidyDecision(code: .deviceRetired, detail: "the date to write lies after the device certificate's valid through",
                                       billFen: billFen, allocations: [])
            return ChargeOutcome(card: card, decision: decision, records: [], cardSequence: nil)
        }
        guard KioskProtocol.Period.of(writtenAt) == card.period else {
            decision = SubsidyDecision(code: .clockSuspect, detail: "the card's time is in another period than this device's", billFen: billFen, allocations: [])
            return ChargeOutcome(card: card, decision: decision, records: [], cardSequence: nil)
        }
        let (sequence, entries) = try usage.next(period: card.period, setting: decision.allocations.map { ($0.program, $0.usedAfterFen) })
        let number = card.facts.cardNumber
        let challenge: [UInt8]
        do {
            try card.session.verifyCertificate(cert)
            challenge = try card.session.getChallenge()
        } catch let e as CardError {
            return refusedWrite(e, card: card, billFen: billFen)
        }
        let object = try UsageRecord.encode(cardNumber: number, period: card.period, sequence: sequence, terminalID: device.config.deviceID,
                                            writtenAt: writtenAt, entries: entries, challenge: challenge, signer: device.signingKey)
        let id = try store.beginDeduction(device: device.context, cardNumber: number, personRef: card.personRef, period: card.period,
                                          cardFen: card.facts.cardUsedFen, decision: decision, billReference: billReference,
                                          cardSequence: sequence, usageObject: object, cardChallenge: challenge, now: now)
        FaultPoint.hit("after-pending")
        let ack: [UInt8]
        do {
            ack = try card.session.writeUsage(object, cardNumber: number, sequence: sequence, challenge: challenge,
                                              cardPublicKey: card.readout.holder.cardPublicKey)
        } catch let e as CardError {
            if case .writeRefused = e {
                // The card answered definitively: nothing was written.
                try store.voidDeduction(id, now: clock.now(), resolution: e.description)
                return refusedWrite(e, card: card, billFen: billFen)
            }
            // No answer, or 90 00 without a valid acknowledgement: a torn write. It stays
            // pending until the card is presented again (§6 step 7).
            logger.warning("usage write not acknowledged; deduction pending", metadata: ["deduction": "\(id)", "why": "\(e)"])
            return ChargeOutcome(card: card, decision: SubsidyDecision(code: .cardRemoved, detail: "the write was not acknowledged (\(e)); present the card again",
                                                                       billFen: billFen, allocations: []), records: [], cardSequence: nil)
        }
        FaultPoint.hit("after-card-write")
        let records = try store.commitDeduction(id, device: device.context, ack: ack, cardWrittenAt: writtenAt, now: clock.now())
        FaultPoint.hit("after-commit")
        logger.info("subsidy granted", metadata: ["card": "\(Masking.cardNumber(number))", "subsidy_fen": "\(decision.subsidyFen)",
                                                  "records": "\(records.map(\.recordID))"])
        return ChargeOutcome(card: card, decision: decision, records: records, cardSequence: sequence)
    }

    /// Refuses a card other than the one the patient confirmed for, or another patient's card (`charge`).
    private func checkChargedCard(_ card: PresentedCard, cardNumber: String?, patient: [UInt8]?) throws {
        if let cardNumber, card.facts.cardNumber != cardNumber {
            logger.warning("another card on the reader than the confirmed one; nothing written", metadata: [
                "card": "\(Masking.cardNumber(card.facts.cardNumber))"])
            throw CardRefusal(code: .cardRemoved, detail: "the card on the reader is not the one the pre-settlement was for", cardNumber: nil)
        }
        if let patient, !PatientIdentity.same(card.readout.holder.identityDigest, patient) {
            logger.notice("card is not the bill's patient", metadata: ["card": "\(Masking.cardNumber(card.facts.cardNumber))"])
            throw CardRefusal(code: .wrongPatient, detail: "the bill names another patient", cardNumber: card.facts.cardNumber)
        }
    }

    /// The outcome of a bill this card already paid, nil for a bill not yet paid; throws for another card's bill (`charge`).
    private func alreadyCharged(billReference: String, card: PresentedCard) throws -> ChargeOutcome? {
        // A bill this card already paid ends here, whatever the figures say now: a torn write
        // that presenting the card again just committed, or the hospital system sending the
        // same bill again. Receipt and "已贴补", never a second deduction nor "pay in full".
        let earlier = try store.deduction(billReference: billReference)
        // A torn write of this bill on another card: only that card may come back for it.
        if let d = earlier, d.state == .pending, d.cardNumber != card.facts.cardNumber {
            throw LedgerError.pendingExists(cardNumber: d.cardNumber)
        }
        if let done = earlier, done.state == .committed {
            guard done.cardNumber == card.facts.cardNumber else { throw LedgerError.duplicateBill(billReference) }
            var o = ChargeOutcome(card: card, decision: SubsidyDecision(code: .granted, detail: "this bill was already subsidised",
                                                                        billFen: done.billFen, allocations: done.allocations),
                                  records: try store.records(deductionID: done.id), cardSequence: done.cardSequence)
            o.alreadySubsidised = true
            return o
        }
        return nil
    }

    /// The outcome when `step` writes nothing (a preview, or figures other than the confirmed ones); nil to write (`charge`).
    private func unwrittenCharge(step: ChargeStep, card: PresentedCard, decision: SubsidyDecision, billReference: String) -> ChargeOutcome? {
        switch step {
        case .preview:
            var o = ChargeOutcome(card: card, decision: decision, records: [], cardSequence: nil)
            o.previewOnly = true
            return o
        case .write(let confirmed?) where confirmed != decision.allocations:
            logger.notice("figures changed since the pre-settlement; nothing written", metadata: ["bill": "\(billReference)"])
            var o = ChargeOutcome(card: card, decision: decision, records: [], cardSequence: nil)
            o.previewOnly = true
            o.figuresChanged = true
            return o
        case .write: return nil
        }
    }

    func refusedWrite(_ e: CardError, card: PresentedCard, billFen: Fen) -> ChargeOutcome {
        switch e {
        case .writeRefused(let command, let sw):
            logger.warning("card refused the write", metadata: ["card": "\(Masking.cardNumber(card.facts.cardNumber))", "command": "\(command.rawValue)", "sw": "\(sw)"])
            var o = ChargeOutcome(card: card, decision: SubsidyDecision(code: .cardWriteRefused, detail: e.description, billFen: billFen, allocations: []),
                                  records: [], cardSequence: nil)
            o.writeRefusal = (command, sw)
            return o
        case .cardRemoved:
            return ChargeOutcome(card: card, decision: SubsidyDecision(code: .cardRemoved, detail: e.description, billFen: billFen, allocations: []),
                                 records: [], cardSequence: nil)
        default:
            return ChargeOutcome(card: card, decision: SubsidyDecision(code: .cardUnreadable, detail: e.description, billFen: billFen, allocations: []),
                                 records: [], cardSequence: nil)
        }
    }

    /// At most this many legal-aid applications per card per day (issue 20 item 5).
    public static let legalAidPerDay = 3

    /// A legal-aid application with the card alone (priority handling), with the card's
    /// consent (upload spec §1, amendment 2026-12-06): INTERNAL AUTHENTICATE over the challenge
    /// derived from every field of the application, made now, with the card on the reader.
    public func applyLegalAid(_ channel: CardChannel, matter: String, contactPhone: String?) throws -> LegalAidOutcome {
        let card = try present(channel)
        let view = try card.view ?? store.view(cardNumber: card.facts.cardNumber, period: card.period)
        var status = Decide.status(card: card.facts, view: view, now: clock.now())
        guard status.isEligible else { return LegalAidOutcome(card: card, decision: status, record: nil) }
        guard let program = status.programs.first(where: { $0.program.cardType == .legalAid && ($0.program.matters ?? []).contains { $0.code == matter } }) else {
            status = StatusDecision(code: .notEligible, detail: "matter \(matter) is not covered by the person's legal aid programs", programs: status.programs)
            return LegalAidOutcome(card: card, decision: status, record: nil)
        }
        // The record's time is fixed before the card signs, and carried exactly as signed.
        let now = clock.now()
        let createdAt = Timestamp.string(now)
        var application = SettlementRecord.LegalAidApplication(cardNumber: card.facts.cardNumber, personRef: card.personRef,
                                                               program: program.program.code, matter: matter, contactPhone: contactPhone)
        let usageDigest = CardSession.usageDigest(of: card.readout)
        let challenge = Array(SHA256.hash(data: application.consentPreimage(deviceID: device.config.deviceID, createdAt: createdAt)))
        let answer: ResponseAPDU
        do { answer = try card.session.internalAuthenticate(challenge: challenge) } catch let e as CardError {
            throw refusal(for: e, cardNumber: card.facts.cardNumber)
        }
        let message = CardSession.authMessage(cardNumber: card.facts.cardNumber, challenge: challenge, usageDigest: usageDigest)
        guard answer.status.isSuccess, answer.data.count == 64,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: card.readout.holder.cardPublicKey),
              key.isValidSignature(answer.data, for: message) else {
            throw CardRefusal(code: .cardNotAuthentic, detail: "the card's consent to the application does not verify", cardNumber: card.facts.cardNumber)
        }
        application.cardUsageDigest = Hex.encode(usageDigest)
        application.cardAuth = Data(answer.data).base64EncodedString()
        guard let record = try store.recordLegalAidApplication(device: device.context, application: application, now: now,
                                                               dailyLimit: Self.legalAidPerDay) else {
            status = StatusDecision(code: .legalAidDailyLimit, detail: "\(Self.legalAidPerDay) applications with this card today already",
                                    programs: status.programs)
            return LegalAidOutcome(card: card, decision: status, record: nil)
        }
        return LegalAidOutcome(card: card, decision: status, record: record)
    }
}
