import Foundation

/// What the card itself says, after reading and authenticating it.
public struct CardFacts: Sendable, Equatable {
    /// The card number (16 digits), from EF.HOLDER.
    public var cardNumber: String
    /// Medical or legal aid: the application selected (card spec §2).
    public var kind: CardKind
    /// Holder category, two hex digits as in the snapshot (`"01"`).
    public var category: String
    /// Whether the card's expiry date (`DF27`) has passed (card spec §3.1, snapshot spec §3).
    public var expired: Bool
    /// C per program for the current period (already 0 for another period).
    public var cardUsedFen: [String: Fen]
    /// Why the card's own time is ahead of the terminal's (card spec §5.5: a later period, or
    /// `DF45` more than 10 minutes ahead); nil when it is not. Refuses subsidies to this card.
    public var clockAhead: String?
    /// The facts of one card; no card usage and a clock not ahead unless given.
    public init(cardNumber: String, kind: CardKind, category: String, expired: Bool, cardUsedFen: [String: Fen] = [:], clockAhead: String? = nil) {
        self.cardNumber = cardNumber; self.kind = kind; self.category = category
        self.expired = expired; self.cardUsedFen = cardUsedFen; self.clockAhead = clockAhead
    }
}

/// What the device itself allows (sync spec §5–6): subsidies only, status checks still answer.
public struct DeviceStanding: Sendable, Equatable {
    /// Why this kiosk may not grant (`device_retired`): its snapshot entry absent or retired,
    /// its certificate not valid at its clock. nil: it may.
    public var retired: String?
    /// Why the kiosk's clock is suspect (`clock_suspect`): it reads more than 10 minutes
    /// before the floor. nil: it is not.
    public var clockSuspect: String?
    /// A standing; a nil reason means nothing stands in the way.
    public init(retired: String? = nil, clockSuspect: String? = nil) { self.retired = retired; self.clockSuspect = clockSuspect }
    /// A device that may grant: neither retired nor its clock suspect.
    public static let ok = DeviceStanding()
}

/// The snapshot's view of one card, as the store looks it up.
public struct SnapshotView: Sendable, Equatable {
    /// The installed snapshot's id.
    public var snapshotID: String
    /// When the snapshot expires: from then on subsidies refuse `snapshot_expired`; status checks still answer.
    public var expiresAt: Date
    /// The card's entry; nil when the snapshot does not know the card.
    public var card: CardEntry?
    /// The entry of the card's person; nil when the snapshot does not hold it.
    public var person: Person?
    /// Every program of the snapshot named in the person's `programs`.
    public var programs: [Program]
    /// S and L per program code for the current period.
    public var usage: [String: UsageFigures]
    /// A view; `usage` empty means S and L are 0 for every program.
    public init(snapshotID: String, expiresAt: Date, card: CardEntry?, person: Person?, programs: [Program], usage: [String: UsageFigures] = [:]) {
        self.snapshotID = snapshotID; self.expiresAt = expiresAt; self.card = card; self.person = person
        self.programs = programs; self.usage = usage
    }
}

/// One program's part of a status answer.
public struct ProgramStatus: Sendable, Equatable {
    /// The program.
    public var program: Program
    /// Medical: what is left this period; nil for legal aid.
    public var remainingFen: Fen?
    /// Medical: used = max(S + L, C) this period; nil for legal aid.
    public var usedFen: Fen?
}

/// A status check's answer.
public struct StatusDecision: Sendable, Equatable {
    /// `eligible`, or the refusal's code.
    public var code: ReasonCode
    /// The refusal's reason in words; empty when eligible.
    public var detail: String
    /// The eligible programs in priority order; empty for a refusal.
    public var programs: [ProgramStatus]
    /// Whether the code is `eligible`.
    public var isEligible: Bool { code == .eligible }
    /// A status answer from its parts.
    public init(code: ReasonCode, detail: String, programs: [ProgramStatus]) { self.code = code; self.detail = detail; self.programs = programs }
}

/// One program's share of a subsidy.
public struct Allocation: Sendable, Equatable, Codable {
    /// The program code.
    public var program: String
    /// This program's subsidy, in fen.
    public var subsidyFen: Fen
    /// What the program had used this period before the subsidy (max(S + L, C)), in fen.
    public var usedBeforeFen: Fen
    /// Used before plus this subsidy, in fen.
    public var usedAfterFen: Fen
    /// One program's share from its figures (fen).
    public init(program: String, subsidyFen: Fen, usedBeforeFen: Fen, usedAfterFen: Fen) {
        self.program = program; self.subsidyFen = subsidyFen; self.usedBeforeFen = usedBeforeFen; self.usedAfterFen = usedAfterFen
    }
}

/// A subsidy's answer for one bill (snapshot spec §5–6): granted with each program's share, or the refusal.
public struct SubsidyDecision: Sendable, Equatable {
    /// `granted`, or the refusal's code.
    public var code: ReasonCode
    /// The refusal's reason in words; empty when granted.
    public var detail: String
    /// The bill, in fen.
    public var billFen: Fen
    /// Each program's share in priority order; empty unless granted.
    public var allocations: [Allocation]
    /// A subsidy answer from its parts.
    public init(code: ReasonCode, detail: String, billFen: Fen, allocations: [Allocation]) {
        self.code = code; self.detail = detail; self.billFen = billFen; self.allocations = allocations
    }
    /// The whole subsidy, every program's share summed, in fen.
    public var subsidyFen: Fen { allocations.reduce(0) { $0 + $1.subsidyFen } }
    /// What the patient pays: the bill less the subsidy, in fen.
    public var patientPaysFen: Fen { billFen - subsidyFen }
    /// Whether the code is `granted`.
    public var isGranted: Bool { code == .granted }
}

/// Snapshot spec §3–6 as pure functions: no clock, store or card of their own.
public enum Decide {
    /// §3–4: the card's and the person's state and eligibility. nil when usable; the
    /// refusal otherwise. Subsidies also refuse an expired snapshot first.
    static func refusal(_ card: CardFacts, _ view: SnapshotView?, now: Date, forSubsidy: Bool,
                        device: DeviceStanding = .ok) -> (ReasonCode, String)? {
        // §6 order: device_retired, clock_suspect (subsidy-only codes), then the snapshot's.
        if forSubsidy, let why = device.retired { return (.deviceRetired, why) }
        if forSubsidy, let why = device.clockSuspect { return (.clockSuspect, why) }
        if forSubsidy, let why = card.clockAhead { return (.clockSuspect, why) }
        guard let view else { return (.snapshotMissing, "no snapshot installed") }
        if forSubsidy && now >= view.expiresAt { return (.snapshotExpired, "snapshot \(view.snapshotID) expired") }
        if card.expired { return (.cardExpired, "card past its expiry date") }
        guard let entry = view.card else { return (.cardUnknown, "card \(card.cardNumber) is not in the snapshot") }
        switch entry.status {
        case .active: break
        case .lost: return (.cardLost, "card reported lost")
        case .revoked: return (.cardRevoked, "card revoked")
        case .replaced: return (.cardReplaced, "card replaced")
        }
        guard let person = view.person else { return (.cardUnknown, "the card's person is not in the snapshot") }
        switch person.status {
        case .active: break
        case .suspended: return (.personSuspended, person.statusReason)
        case .revoked: return (.personRevoked, person.statusReason)
        }
        if eligiblePrograms(card, view).isEmpty {
            return (.notEligible, "no \(card.kind.rawValue) program for this person and category \(card.category)")
        }
        return nil
    }

    /// §4: programs of the card's type in the person's list whose categories hold the card's, by priority.
    public static func eligiblePrograms(_ card: CardFacts, _ view: SnapshotView) -> [Program] {
        guard let person = view.person else { return [] }
        // A program counts once, however often a list names it (snapshot spec v2 §1 refuses
        // such a file; this keeps a duplicate from ever granting twice the allowance).
        var seen = Set<String>()
        return view.programs
            .filter { $0.cardType == card.kind && person.programs.contains($0.code) && $0.categories.contains(card.category) }
            .filter { seen.insert($0.code).inserted }
            .sorted { ($0.priority, $0.code) < ($1.priority, $1.code) }
    }

    /// §5: used = max(S + L, C); remaining = max(0, limit − used).
    public static func figures(_ program: Program, _ card: CardFacts, _ view: SnapshotView) -> (used: Fen, remaining: Fen) {
        var f = view.usage[program.code] ?? UsageFigures()
        f.cardFen = card.cardUsedFen[program.code] ?? 0
        let used = f.used
        return (used, max(0, (program.limitFen ?? 0) - used))
    }

    /// A status check (township terminal, `kioskctl check`).
    public static func status(card: CardFacts, view: SnapshotView?, now: Date) -> StatusDecision {
        if let (code, detail) = refusal(card, view, now: now, forSubsidy: false) {
            return StatusDecision(code: code, detail: detail, programs: [])
        }
        let programs = eligiblePrograms(card, view!).map { p -> ProgramStatus in
            guard p.cardType == .medical else { return ProgramStatus(program: p, remainingFen: nil, usedFen: nil) }
            let f = figures(p, card, view!)
            return ProgramStatus(program: p, remainingFen: f.remaining, usedFen: f.used)
        }
        return StatusDecision(code: .eligible, detail: "", programs: programs)
    }

    /// §5: a bill of `billFen` against the person's medical programs in priority order,
    /// each to what is left of the bill. Never more than any program's remaining allowance.
    public static func subsidy(card: CardFacts, view: SnapshotView?, billFen: Fen, now: Date, device: DeviceStanding = .ok) -> SubsidyDecision {
        precondition(billFen > 0, "a bill is a positive number of fen")
        if let (code, detail) = refusal(card, view, now: now, forSubsidy: true, device: device) {
            return SubsidyDecision(code: code, detail: detail, billFen: billFen, allocations: [])
        }
        guard card.kind == .medical else {
            return SubsidyDecision(code: .notEligible, detail: "a legal aid card carries no medical subsidy", billFen: billFen, allocations: [])
        }
        var left = billFen
        var allocations: [Allocation] = []
        for p in eligiblePrograms(card, view!) where p.cardType == .medical {
            let f = figures(p, card, view!)
            let rate = Fen(min(max(p.ratePercent ?? 100, 0), 100))
            let share = min(left * rate / 100, f.remaining)
            guard share > 0 else { continue }
            allocations.append(Allocation(program: p.code, subsidyFen: share, usedBeforeFen: f.used, usedAfterFen: f.used + share))
            left -= share
        }
        guard !allocations.isEmpty else {
            return SubsidyDecision(code: .limitExhausted, detail: "nothing left this period", billFen: billFen, allocations: [])
        }
        return SubsidyDecision(code: .granted, detail: "", billFen: billFen, allocations: allocations)
    }
}
