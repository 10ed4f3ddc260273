import BenefitCard
import KioskProtocol
import Foundation
import Synchronization
import KioskStore
import Logging
import Metrics
import enum Receipts.ReceiptFormat
import SmartCard

/// What to do after a subsidy or an application is recorded: wake the uploader.
public struct AfterRecord: Sendable {
    /// Called once a record is queued (the daemon wakes its uploader).
    public var recordsQueued: @Sendable () -> Void = {}
    /// Nothing to do.
    public init(recordsQueued: @escaping @Sendable () -> Void = {}) { self.recordsQueued = recordsQueued }
}

/// Card sessions, one at a time on a serial queue of their own (PC/SC calls block), for
/// the daemon. The screen hears about everything through the one ordered `ScreenFeed`:
/// changes are published synchronously, in the order they are made.
///
/// `@unchecked Sendable`, and why that is sound: every `let` is of a `Sendable` type but
/// `cards`, which is only used from the queue, and `after` is behind a `Mutex`. The `var`s
/// below (`cardReader`, `bill`, `shown`, …) are confined to the serial `queue`: every method
/// that touches them runs its body through `perform` or `queue.async` (the card events, the
/// bill actions), or is itself only called from such a body (`onCard`, `chargeNow`,
/// `finish…`, the methods of `Engine+Sessions.swift`); none is public. The compiler cannot
/// see a dispatch queue's confinement; an actor cannot replace it, because PC/SC calls block
/// for seconds and must not hold a thread of the concurrency pool.
public final class Engine: @unchecked Sendable {
    /// The card sessions themselves (read, check, charge, apply), shared with `kioskctl`.
    public let kiosk: Kiosk
    /// Where every screen change is published, in the order it is made.
    public let feed: ScreenFeed
    /// Which readers this kiosk uses (vpcd's virtual readers only when allowed).
    public let filter: ReaderFilter
    /// Where the sessions log what happened.
    public let logger: Logger
    /// `--trace-apdu`: every APDU logged (masked) at notice level.
    let traceAPDU: Bool
    let afterRecord = Mutex(AfterRecord())
    /// What to do after a record is queued; set once by the daemon's start-up.
    public var after: AfterRecord {
        get { afterRecord.withLock { $0 } }
        set { afterRecord.withLock { $0 = newValue } }
    }
    /// Prints the receipt of a subsidy or a legal-aid application.
    public let receipts: ReceiptDesk
    let queue = DispatchQueue(label: "kioskd.card-sessions")
    /// How the engine reaches a card: PC/SC in the daemon, emulated cards in tests.
    let cards: CardAccess
    // Confined to `queue`:
    var cardReader: String?
    /// Taps counted since start; `cardTap` is the one of the card on the reader. A bill
    /// counts only taps made after it arrived (issue 20).
    var taps: UInt64 = 0
    var cardTap: UInt64?
    var bill: OpenBill?
    var confirmationNumber: UInt64 = 0
    var voiceNumber: UInt64 = 0
    /// Bumped whenever a bill's status changes, for the bill API's long polls.
    public let changes = BillChanges()
    /// The result on the screen now (nil: none), numbered so a timer set for an earlier one
    /// does not clear a later one; and the status a slip would print.
    var shown: (number: UInt64, result: ScreenState.Result)?
    var shownNumber: UInt64 = 0
    var lastStatus: (card: PresentedCard, decision: StatusDecision)?
    /// The legal-aid application just filed on the card on the reader, while it can be withdrawn.
    var cancellable: (recordID: String, cardNumber: String, until: DispatchTime)?

    /// An engine for `kiosk`, publishing to `feed`.
    /// - Parameters:
    ///   - cards: how to reach the card on a reader (`PCSCCardAccess` in the daemon).
    ///   - traceAPDU: log every APDU, masked (`kioskd --trace-apdu`).
    public init(kiosk: Kiosk, feed: ScreenFeed, filter: ReaderFilter, logger: Logger, receipts: ReceiptDesk,
                cards: CardAccess = PCSCCardAccess(), traceAPDU: Bool = false) {
        self.cards = cards
        self.traceAPDU = traceAPDU
        self.kiosk = kiosk
        self.receipts = receipts
        self.feed = feed
        self.filter = filter
        self.logger = logger
    }

    /// Runs `body` on the session queue.
    public func perform<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in queue.async { c.resume(with: Result { try body() }) } }
    }

    /// Liveness (the watchdog): `answered` runs on the session queue once everything queued
    /// before it has run. A session stuck in PC/SC never lets it run.
    public func probe(_ answered: @escaping @Sendable () -> Void) { queue.async(execute: answered) }

    func publish(_ change: @escaping ScreenChange) { feed.publish(change) }

    func onCard<T>(_ reader: String, _ body: (CardChannel) throws -> T) throws -> T {
        let logger = self.logger
        return try cards.withCard(reader) { channel in
            guard traceAPDU else { return try body(channel) }
            return try body(TracingChannel(channel) { logger.notice("\($0)", metadata: ["reader": "\(reader)"]) })
        }
    }

    // MARK: events (called from the reader service)

    /// A card on the reader. `fresh` false: found lying there when the reader was listed (at
    /// start, after pcscd came back): not a tap, so it counts for no open bill.
    public func cardInserted(_ reader: String, fresh: Bool = true) async {
        _ = try? await perform { [self] in
            taps &+= 1
            cardReader = reader
            cardTap = fresh ? taps : 0
            shown = nil
            lastStatus = nil
            cancellable = nil
            publish { $0.cardPresent = true; $0.reader = reader; $0.phase = "reading"; $0.result = nil; $0.notice = nil; $0.liftCard = false }
            // Issue 20: a card tapped after the bill arrived is read for it, and only shows
            // the pre-settlement; nothing is written before the patient presses 确认.
            if let bill, bill.status != .confirming, kiosk.device.config.profile == .hospital {
                guard fresh else {
                    logger.info("a card found lying on the reader: not a tap, nothing read for the bill", metadata: ["bill": "\(bill.reference)"])
                    publish { $0.phase = "idle"; $0.liftCard = true }
                    return
                }
                previewNow(reader, bill)
            } else {
                checkNow(reader)
            }
        }
    }

    /// The card left `reader`: a pre-settlement ends with nothing written, and the result
    /// on the screen loses the person's details.
    public func cardRemoved(_ reader: String) async {
        _ = try? await perform { [self] in
            guard cardReader == reader else { return }
            cardReader = nil
            cardTap = nil
            lastStatus = nil
            cancellable = nil
            checkpointWhileNobodyWaits()
            publish { $0.cardPresent = false; $0.liftCard = false; if $0.phase == "reading" { $0.phase = "idle" } }
            // A pre-settlement ends with its card: nothing was written, the bill waits.
            if reopenConfirming() != nil {
                shown = nil
                publish { $0.phase = "idle"; $0.result = nil }
                return
            }
            // Issue 10/20: the person's result leaves the screen with the card; the amount
            // to pay stays a moment, without name or card number.
            if var current = shown?.result, !current.redacted {
                current.redact(printsSlips: kiosk.device.config.printsSlips)
                show(current, for: timing.afterRemovalSeconds)
            }
        }
    }

    /// Issue 24 item 4: the card has left, so nobody waits on the store; the WAL's checkpoint
    /// is done now (off the session queue) rather than inside a later patient's commit.
    func checkpointWhileNobodyWaits() {
        let store = kiosk.device.store, logger = self.logger
        // One at a time, on a queue of their own; one already waiting is enough.
        let queued = checkpointQueued
        guard queued.flag.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        Engine.checkpoints.async {
            queued.flag.store(false, ordering: .releasing)
            do {
                if let pages = try store.checkpointWhenIdle() { logger.debug("WAL checkpointed while nobody waits", metadata: ["pages": "\(pages)"]) }
            } catch {
                logger.warning("the WAL checkpoint failed; SQLite's own checkpoint remains", metadata: ["error": "\(error)"])
            }
        }
    }

    private static let checkpoints = DispatchQueue(label: "kiosk.store.checkpoint", qos: .utility)
    /// Whether this engine's store has a checkpoint waiting on that queue (per engine: a
    /// process running several, as the tests do, must not drop one store's for another's).
    final class CheckpointQueued: Sendable { let flag = Atomic<Bool>(false) }
    private let checkpointQueued = CheckpointQueued()

    // MARK: the screen's result (on the queue)

    var settings: ScreenSettings { kiosk.device.config.screenSettings }

    /// The screen's timings (issue 20 items 2 and 4).
    struct Timing: Sendable {
        /// Seconds a pre-settlement waits for 确认.
        var confirmSeconds = 60
        /// Seconds a result stays while its card stays on the reader.
        var whileCardSeconds = 120
        /// The take-card prompt: said with the result, then again every this many seconds
        /// while the card stays, `takeCardTimes` times in all.
        var takeCardEverySeconds = 10
        var takeCardTimes = 3
        /// Seconds what to pay (no name, no card number) stays after the card is taken.
        var afterRemovalSeconds = 10

        /// The production timings, or, with `BENEFIT_KIOSK_TEST_FAST_SCREEN=1` (tests only,
        /// like `BENEFIT_KIOSK_TEST_NOW`), the same divided by ten (confirmation by four: a
        /// loaded test machine needs its seconds to take a screenshot of the pre-settlement).
        /// Compiled into debug builds only, like the other test hooks: a release binary holds
        /// not even the variable's name (`package.sh` refuses one that does).
        static var fromEnvironment: Timing {
            #if BENEFIT_KIOSK_TEST_HOOKS
            guard ProcessInfo.processInfo.environment["BENEFIT_KIOSK_TEST_FAST_SCREEN"] == "1" else { return Timing() }
            return Timing(confirmSeconds: 15, whileCardSeconds: 12, takeCardEverySeconds: 1, takeCardTimes: 3, afterRemovalSeconds: 1)
            #else
            return Timing()
            #endif
        }
    }
    let timing = Timing.fromEnvironment

    /// Puts a result on the screen with what to do next and its voice prompt, and clears it
    /// after `seconds` (default: the configured result time) unless another replaced it.
    /// While the card stays on the reader the result stays (up to 2 minutes) and 请取走卡片
    /// is shown and said (issue 20 item 4).
    func show(_ result: ScreenState.Result, for seconds: Int? = nil) {
        var r = result
        let g = Guidance.of(code: r.code, profile: kiosk.device.config.profile, settings: settings,
                            patientPaysFen: r.patientPaysFen, action: r.action, billEnded: r.billEnded,
                            printsSlips: kiosk.device.config.printsSlips)
        r.headline = g.headline
        if !r.redacted {
            r.next = g.next
            r.voice = g.voice
        }
        let takeCard = cardReader != nil && !r.redacted && !r.keepsCard(profile: kiosk.device.config.profile)
        r.takeCard = takeCard
        if takeCard { r.voice.append("take_card") }
        shownNumber &+= 1
        let number = shownNumber
        voiceNumber &+= 1
        r.number = voiceNumber
        shown = (number, r)
        let final = r
        publish { $0.phase = "result"; $0.result = final }
        let hold = takeCard ? timing.whileCardSeconds : (seconds ?? settings.resultSeconds)
        if takeCard {
            for i in 1..<timing.takeCardTimes {
                queue.asyncAfter(deadline: .now() + .seconds(i * timing.takeCardEverySeconds)) { [self] in
                    guard shown?.number == number, cardReader != nil, var again = shown?.result else { return }
                    voiceNumber &+= 1
                    again.voice = ["take_card"]
                    again.number = voiceNumber
                    shown = (number, again)
                    let repeated = again
                    publish { $0.result = repeated }
                }
            }
        }
        queue.asyncAfter(deadline: .now() + .seconds(hold)) { [self] in
            guard shown?.number == number else { return }
            shown = nil
            publish { if $0.phase == "result" { $0.phase = "idle" }; $0.result = nil }
        }
    }

    /// Withdraws the legal-aid application just filed with the card on the reader (issue 10),
    /// within `cancel_seconds` of filing. Record numbers have no gaps and nothing recorded is
    /// ever taken back, so the withdrawal is a record of its own: an `alert`
    /// `legal_aid_withdrawn` naming the application, uploaded after it; the resident gets a slip.
    public func cancelLegalAid() async throws {
        try await perform { [self] in
            guard cardReader != nil else { throw ActionError.noCard }
            guard let c = cancellable else { throw ActionError.nothingToCancel }
            guard DispatchTime.now() < c.until else { cancellable = nil; throw ActionError.tooLate(settings.cancelSeconds) }
            cancellable = nil
            let now = kiosk.clock.now()
            _ = try kiosk.device.store.recordAlert(device: kiosk.device.context, code: "legal_aid_withdrawn", cardNumber: c.cardNumber,
                                                   detail: "the applicant withdrew \(c.recordID) at the kiosk within \(settings.cancelSeconds) s of filing",
                                                   now: now)
            after.recordsQueued()
            logger.notice("legal-aid application withdrawn by the applicant", metadata: ["record": "\(c.recordID)"])
            let outcome = receipts.printSlip(lines: ["法律援助申请已撤销", "卡号 \(Masking.cardNumber(c.cardNumber))",
                                                     "撤销时间 \(ReceiptFormat.chinaTime(now))", "此前的申请回执作废",
                                                     "\(kiosk.device.config.institution) \(kiosk.device.config.deviceID)"], now: now)
            if case .failed(let why) = outcome { logger.error("withdrawal slip not printed", metadata: ["why": "\(why)"]) }
            var result = shown?.result ?? ScreenState.Result(action: "legal_aid", code: "cancelled", message: "", detail: "")
            result.code = "cancelled"
            result.message = Guidance.text(code: "cancelled", profile: .township)
            result.cancellable = false
            result.receipt = nil
            show(result)
        }
    }

    /// A status slip of the card on the reader (township, issue 10): this year's usage and
    /// what is left, from the card and the snapshot. Settles nothing, carries no code.
    public func printStatusSlip() async throws -> String {
        try await perform { [self] in
            guard kiosk.device.config.profile == .township else { throw ActionError.wrongProfile("hospital") }
            guard cardReader != nil, let status = lastStatus else { throw ActionError.noCard }
            let now = kiosk.clock.now()
            var lines = ["惠民卡状态单", "持卡人 \(Masking.name(status.card.readout.holder.name))",
                         "卡号 \(Masking.cardNumber(status.card.facts.cardNumber))",
                         "状态 \(Guidance.of(code: status.decision.code.rawValue, profile: .township, settings: settings).headline)"]
            for p in status.decision.programs {
                if let left = p.remainingFen {
                    lines += ["\(p.program.name)", "  今年已用 ¥\(Money.yuan(p.usedFen ?? 0))  剩余 ¥\(Money.yuan(left))"]
                } else if p.program.matters != nil {
                    lines += ["\(p.program.name)", "  可凭卡申请法律援助, 优先受理"]
                }
            }
            lines += ["查询时间 \(ReceiptFormat.chinaTime(now))", "\(kiosk.device.config.institution) \(kiosk.device.config.deviceID)",
                      "本单仅供查询, 不作结算凭证"]
            let outcome = receipts.printSlip(lines: lines, now: now)
            if outcome == .noPrinter { return "no printer" }
            if case .failed(let why) = outcome {
                logger.error("status slip not printed", metadata: ["why": "\(why)"])
                return "not printed"
            }
            logger.info("status slip printed", metadata: ["where": "\(outcome.text)"])
            if var current = shown?.result, !current.redacted {
                current.voice = ["slip_printed"]
                current.next = "请取走状态单和卡片。"
                let number = shownNumber
                shown = (number, current)
                let final = current
                publish { $0.result = final }
            }
            return "printed"
        }
    }

    /// pcscd went away: the card's presence is unknown, a pre-settlement ends with nothing
    /// written, and the screen says the card service is reconnecting.
    public func serviceLost() async {
        _ = try? await perform { [self] in
            cards.reset()
            cardReader = nil
            cardTap = nil
            // The card's presence is unknown now: a pre-settlement ends with nothing written.
            if reopenConfirming() != nil {
                shown = nil
                publish { $0.phase = "idle"; $0.result = nil }
            }
            publish { $0.notice = "读卡服务中断，正在恢复 Card service (pcscd) lost, reconnecting"; $0.cardPresent = false }
        }
    }

    /// pcscd is back: the screen's notice about it is cleared.
    public func serviceRestored() async {
        _ = try? await perform { [self] in publish { $0.notice = nil } }
    }

    // MARK: actions (called from HTTP)

    /// Why an action asked for over HTTP (a bill, 确认, 取消, a legal-aid application, a
    /// withdrawal, a slip) was refused.
    public enum ActionError: Error, CustomStringConvertible {
        case billWaiting(String), noCard, wrongProfile(String), nothingToCancel, tooLate(Int), notConfirming(String)
        case noBill, billPending(String), billEnded(BillOutcome)
        /// The refusal in words, for the bill API's `error`.
        public var description: String {
            switch self {
            case .billWaiting(let r): return "bill \(r) is still waiting for a card"
            case .noCard: return "no card on the reader"
            case .wrongProfile(let p): return "not available on a \(p) kiosk"
            case .nothingToCancel: return "no application filed with the card on the reader"
            case .tooLate(let s): return "an application can be withdrawn here only within \(s) s of filing"
            case .notConfirming(let r): return "bill \(r) has no such pre-settlement on the screen"
            case .noBill: return "no bill is open"
            case .billPending(let r): return "bill \(r) has a torn write that only its card can resolve: it stays open"
            case .billEnded(let o): return "bill \(o.billReference) was already \(o.status.rawValue) (records \(o.records.joined(separator: ", ")))"
            }
        }
        /// The HTTP status the bill API answers it with.
        public var httpStatus: Int {
            switch self {
            case .billWaiting, .noCard, .nothingToCancel, .tooLate, .notConfirming, .billPending, .billEnded: return 409
            case .noBill: return 404
            case .wrongProfile: return 404
            }
        }
    }

    /// A bill from the hospital system (already checked by `BillRequest.parse`; `Kiosk.charge`
    /// checks it again). It waits for a card tapped after it arrived (issue 20): a card
    /// resting on the reader from before must be lifted and tapped again.
    public func submitBill(_ request: BillRequest) async throws -> BillOutcome {
        guard kiosk.device.config.profile == .hospital else { throw ActionError.wrongProfile("township") }
        try BillError.check(billFen: request.billFen, billReference: request.billReference)
        return try await perform { [self] in
            if let bill {
                // The same bill again (same reference, amount and patient) answers where it stands.
                let samePatient = bill.patient.map { p in request.patient.map { PatientIdentity.same(p, $0) } ?? false } ?? (request.patient == nil)
                guard bill.reference == request.billReference, bill.billFen == request.billFen, samePatient else {
                    throw ActionError.billWaiting(bill.reference)
                }
                return bill.outcome(now: kiosk.clock.now())
            }
            // A bill that ended granted is never reopened (another card could then end it
            // "refused" and the patient pay twice): its outcome answers.
            if let ended = try kiosk.device.store.billOutcome(request.billReference, now: kiosk.clock.now()), ended.status == .granted {
                throw ActionError.billEnded(ended)
            }
            let b = OpenBill(reference: request.billReference, billFen: request.billFen, patient: request.patient, status: .waiting)
            try kiosk.device.store.saveBillOutcome(b.outcome(now: kiosk.clock.now()))
            bill = b
            changes.bump(b.reference)
            shown = nil
            let screenBill = ScreenState.Bill(billReference: b.reference, billFen: b.billFen)
            let resting = cardReader != nil
            publish { $0.bill = screenBill; $0.phase = "idle"; $0.result = nil; $0.liftCard = resting }
            if resting { logger.info("bill arrived with a card resting on the reader: asking for a fresh tap", metadata: ["bill": "\(b.reference)"]) }
            return b.outcome(now: kiosk.clock.now())
        }
    }

    /// `DELETE /api/bills/current`: the open bill ends `cancelled` (a pre-settlement on the
    /// screen goes with it: nothing was written).
    public func cancelBill() async throws -> BillOutcome {
        try await perform { [self] in
            guard var b = bill else { throw ActionError.noBill }
            // A torn write of this bill is resolved only by its card: the bill stays open.
            guard b.status != .pending else { throw ActionError.billPending(b.reference) }
            b.status = .cancelled
            b.code = nil
            b.confirming = nil
            end(b)
            if shown?.result.code == "confirm" { shown = nil; publish { $0.phase = "idle"; $0.result = nil } }
            return b.outcome(now: kiosk.clock.now())
        }
    }

    /// At start-up: a bill whose write was torn before the last stop is open again (pending):
    /// its deduction is resolved only by its card, which alone may take it (`card_pending`
    /// for any other); its patient's digest went with the last process.
    public func reopenPending() async throws {
        try await perform { [self] in
            guard let o = try kiosk.device.store.pendingBillOutcome() else { return }
            var b = OpenBill(reference: o.billReference, billFen: o.billFen, patient: nil, status: .pending)
            b.code = o.code
            bill = b
            let screenBill = ScreenState.Bill(billReference: b.reference, billFen: b.billFen)
            publish { $0.bill = screenBill }
            logger.notice("a bill torn at the last stop waits for its card", metadata: ["bill": "\(b.reference)"])
        }
    }

    /// The patient pressed 确认 on the pre-settlement (the screen's session only). Refused
    /// (409) unless that bill is `confirming` with the same card still on the reader.
    ///
    /// - Parameter confirmation: the number of the pre-settlement the patient saw
    ///   (`Result.confirmation`): a press meant for earlier figures is refused.
    public func confirmBill(_ reference: String, confirmation: UInt64) async throws {
        try await perform { [self] in
            guard let b = bill, b.reference == reference, b.status == .confirming, let c = b.confirming, c.number == confirmation else {
                throw ActionError.notConfirming(reference)
            }
            guard let reader = cardReader, cardTap == c.tap else { throw ActionError.noCard }
            publish { $0.phase = "reading" }
            chargeNow(reader, b, confirmed: c)
        }
    }

    /// 取消 on the pre-settlement: nothing written, the bill waits for a tap again.
    public func declineBill(_ reference: String, confirmation: UInt64) async throws {
        try await perform { [self] in
            guard let b = bill, b.reference == reference, b.status == .confirming, b.confirming?.number == confirmation else {
                throw ActionError.notConfirming(reference)
            }
            endConfirmation(code: "declined")
        }
    }

    /// The open bill back from `confirming` to `waiting` (nothing was written), stored; the
    /// bill, or nil when no pre-settlement was open. The one place a pre-settlement ends
    /// without a write: 取消, its timer, the card leaving, pcscd lost.
    func reopenConfirming() -> OpenBill? {
        guard var b = bill, b.status == .confirming else { return nil }
        b.status = .waiting
        b.confirming = nil
        b.code = nil
        bill = b
        save(b)
        return b
    }

    /// Ends the pre-settlement on the screen without writing: the bill is `waiting` again.
    func endConfirmation(code: String) {
        guard let b = reopenConfirming() else { return }
        var r = ScreenState.Result(action: "charge", code: code, message: "", detail: "")
        r.billFen = b.billFen
        show(r)
        logger.info("pre-settlement ended without a write", metadata: ["bill": "\(b.reference)", "why": "\(code)"])
    }

    /// Files a legal-aid application for `matter` with the card on the reader (`phone`: the
    /// resident's contact number, if given), prints its receipt and shows the result.
    public func applyLegalAid(matter: String, phone: String?) async throws {
        try await perform { [self] in
            guard let reader = cardReader else { throw ActionError.noCard }
            publish { $0.phase = "reading" }
            do {
                let o = try onCard(reader) { try kiosk.applyLegalAid($0, matter: matter, contactPhone: phone) }
                var result = Self.result("legal_aid", o.decision, card: o.card)
                result.matter = matter
                if let r = o.record {
                    result.records = [r.recordID]
                    let name = o.decision.programs.compactMap { $0.program.matters?.first { $0.code == matter }?.name }.first
                    result.receipt = receiptWords(receipts.issue(records: [r], holderName: o.card.readout.holder.name,
                                                                 matterName: name, now: kiosk.clock.now()), records: [r.recordID])
                    after.recordsQueued()
                    result.code = "applied"
                    result.message = Guidance.text(code: "applied", profile: .township)
                    if settings.cancelSeconds > 0 {
                        cancellable = (r.recordID, o.card.facts.cardNumber, .now() + .seconds(settings.cancelSeconds))
                        result.cancellable = true
                    }
                }
                count(result.code)
                show(result, for: result.cancellable ? max(settings.resultSeconds, settings.cancelSeconds) : nil)
            } catch { fail(error, action: "legal_aid") }
        }
    }
}
