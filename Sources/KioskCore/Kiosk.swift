import BenefitCard
import Crypto
import Entitlements
import Foundation
import KioskStore
import Logging
import SmartCard

/// The card as presented: read, authenticated, its pending deductions resolved.
public struct PresentedCard {
    public var session: CardSession
    public var readout: CardReadout
    public var facts: CardFacts
    public var idHash: String?
    public var usageTrust: UsageTrust?
    public var period: String
    /// What resolving this card's pending deductions did (card spec §6 step 6).
    public var resolved: [(deductionID: Int64, committed: Bool)]
    /// The snapshot's view read with the presentation; nil when resolving changed the
    /// ledger (the view is then read again) or there is no snapshot.
    var view: SnapshotView?
}

/// A decision that stopped before the snapshot (card-level): the code and why.
public struct CardRefusal: Error {
    public var code: ReasonCode
    public var detail: String
    public var cardNumber: String?
}

public struct CheckOutcome {
    public var card: PresentedCard
    public var decision: StatusDecision
}

public struct ChargeOutcome {
    public var card: PresentedCard
    public var decision: SubsidyDecision
    /// The settlement records made (granted only).
    public var records: [StoredRecord]
    /// The card sequence written (granted only).
    public var cardSequence: UInt32?
}

public struct LegalAidOutcome {
    public var card: PresentedCard
    public var decision: StatusDecision
    public var record: StoredRecord?
}

/// One card session end to end (card spec §6), shared by the daemon and the command line.
public final class Kiosk {
    public let device: Device
    public let clock: KioskClock
    var challenges: any ChallengeSource
    let logger: Logger

    public init(device: Device, clock: KioskClock = .system, challenges: any ChallengeSource = SystemChallengeSource(),
                logger: Logger = Logger(label: "kiosk")) {
        self.device = device
        self.clock = clock
        self.challenges = challenges
        self.logger = logger
    }

    var store: KioskStore { device.store }

    func idHash(_ citizenID: String, salt: String?) -> String? {
        guard let salt = salt.flatMap({ Data(base64Encoded: $0) }) else { return nil }
        return SnapshotWriter.idHash(citizenID: citizenID, salt: salt)   // normalises the ID itself
    }

    /// Reads and authenticates the card, raises alerts, and resolves its pending deductions.
    /// Card-level failures throw `CardRefusal` with their decision code.
    public func present(_ channel: CardChannel) throws -> PresentedCard {
        let now = clock.now()
        let session = CardSession(channel: channel)
        let readout: CardReadout
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
        let period = Entitlements.Period.of(now)
        // Everything the store says about this card, in one read.
        let stored = try store.presentation(cardNumber: number, period: period)
        var trust: UsageTrust?
        if let usage = readout.usage {
            var keys = stored.deviceKeys.compactMapValues { Data(base64Encoded: $0).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) } }
            keys[device.config.deviceID] = device.signingKey.publicKey
            trust = usage.trust(deviceKeys: keys)
            if case .untrusted = trust {
                try store.recordAlert(device: device.context, code: "usage_record_untrusted", cardNumber: number, detail: trust!.description, now: now)
            }
        }
        let resolved = try resolvePending(stored.pending, usage: readout.usage)
        let facts = CardFacts(cardNumber: number, kind: readout.type == .medical ? .medical : .legalAid,
                              category: readout.holder.category.codeString, expired: readout.holder.isExpired(at: now),
                              cardUsedFen: Dictionary(uniqueKeysWithValues: (readout.usage?.body?.period == period ? readout.usage!.body!.entries : []).map { ($0.program, $0.usedFen) }))
        return PresentedCard(session: session, readout: readout, facts: facts, idHash: idHash(readout.holder.citizenID, salt: stored.idSalt),
                             usageTrust: trust, period: period, resolved: resolved, view: resolved.isEmpty ? stored.view : nil)
    }

    func refusal(for e: CardError, cardNumber: String?) -> CardRefusal {
        switch e {
        case .cardRemoved: return CardRefusal(code: .cardRemoved, detail: e.description, cardNumber: cardNumber)
        default: return CardRefusal(code: .cardUnreadable, detail: e.description, cardNumber: cardNumber)
        }
    }

    /// Card spec §6 step 6: a pending deduction is committed when the card holds exactly
    /// the record this device meant to write, voided otherwise. Exactly once.
    func resolvePending(_ pending: [Deduction], usage: UsageRecord?) throws -> [(deductionID: Int64, committed: Bool)] {
        var out: [(Int64, Bool)] = []
        for d in pending {
            let intended = try? UsageRecord(fileBytes: d.usageObject)
            let written = intended != nil && usage == intended
            if written {
                try store.commitDeduction(d.id, device: device.context, now: clock.now(), resolution: "found on the card when presented again")
            } else {
                try store.voidDeduction(d.id, now: clock.now(), resolution: "not on the card when presented again (card sequence \(usage?.sequence ?? 0))")
            }
            logger.notice("pending deduction resolved", metadata: ["deduction": "\(d.id)", "committed": "\(written)"])
            out.append((d.id, written))
        }
        return out
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

    /// A hospital bill: decide, pending, write the card, commit + queue (card spec §6).
    public func charge(_ channel: CardChannel, billFen: Fen, billReference: String) throws -> ChargeOutcome {
        precondition(billFen > 0, "bills are positive")
        let card = try present(channel)
        let now = clock.now()
        // The write path (beginDeduction) reads the figures again inside its transaction.
        let view = try card.view ?? store.view(cardNumber: card.facts.cardNumber, period: card.period)
        let decision = Decide.subsidy(card: card.facts, view: view, billFen: billFen, now: now)
        guard decision.isGranted, let idHash = card.idHash, let usage = card.readout.usage else {
            return ChargeOutcome(card: card, decision: decision, records: [], cardSequence: nil)
        }
        let (sequence, entries) = try usage.next(period: card.period, setting: decision.allocations.map { ($0.program, $0.usedAfterFen) })
        let object = try UsageRecord.encode(period: card.period, sequence: sequence, terminalID: device.config.deviceID,
                                            writtenAt: now, entries: entries, signer: device.signingKey)
        let id = try store.beginDeduction(device: device.context, cardNumber: card.facts.cardNumber, idHash: idHash, period: card.period,
                                          cardFen: card.facts.cardUsedFen, decision: decision, billReference: billReference,
                                          cardSequence: sequence, usageObject: object, now: now)
        FaultPoint.hit("after-pending")
        do {
            try card.session.writeUsage(object)
        } catch let e as CardError {
            switch e {
            case .writeRefused:
                // The card answered definitively: nothing was written.
                try store.voidDeduction(id, now: clock.now(), resolution: e.description)
                return ChargeOutcome(card: card, decision: SubsidyDecision(code: .cardUnreadable, detail: e.description, billFen: billFen, allocations: []),
                                     records: [], cardSequence: nil)
            default:
                // Unknown whether the card took it: stays pending until the card is presented again.
                logger.warning("card left during the usage write; deduction pending", metadata: ["deduction": "\(id)"])
                return ChargeOutcome(card: card, decision: SubsidyDecision(code: .cardRemoved, detail: "the card left during the write; present it again",
                                                                           billFen: billFen, allocations: []), records: [], cardSequence: nil)
            }
        }
        FaultPoint.hit("after-card-write")
        let records = try store.commitDeduction(id, device: device.context, now: clock.now())
        FaultPoint.hit("after-commit")
        logger.info("subsidy granted", metadata: ["card": "\(Masking.cardNumber(card.facts.cardNumber))", "subsidy_fen": "\(decision.subsidyFen)",
                                                  "records": "\(records.map(\.recordID))"])
        return ChargeOutcome(card: card, decision: decision, records: records, cardSequence: sequence)
    }

    /// A legal-aid application with the card alone (priority handling).
    public func applyLegalAid(_ channel: CardChannel, matter: String, contactPhone: String?) throws -> LegalAidOutcome {
        let card = try present(channel)
        let view = try card.view ?? store.view(cardNumber: card.facts.cardNumber, period: card.period)
        var status = Decide.status(card: card.facts, view: view, now: clock.now())
        guard status.isEligible else { return LegalAidOutcome(card: card, decision: status, record: nil) }
        guard let program = status.programs.first(where: { $0.program.cardType == .legalAid && ($0.program.matters ?? []).contains { $0.code == matter } }) else {
            status = StatusDecision(code: .notEligible, detail: "matter \(matter) is not covered by the person's legal aid programs", programs: status.programs)
            return LegalAidOutcome(card: card, decision: status, record: nil)
        }
        let record = try store.recordLegalAidApplication(device: device.context, cardNumber: card.facts.cardNumber, idHash: card.idHash ?? "",
                                                         program: program.program.code, matter: matter, contactPhone: contactPhone, now: clock.now())
        return LegalAidOutcome(card: card, decision: status, record: record)
    }
}
