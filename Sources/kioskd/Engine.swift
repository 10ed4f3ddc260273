import BenefitCard
import Entitlements
import Foundation
import Synchronization
import KioskCore
import KioskStore
import Logging
import Metrics
import enum Receipts.ReceiptFormat
import SmartCard

/// What to do after a subsidy or an application is recorded: wake the uploader.
struct AfterRecord: Sendable {
    var recordsQueued: @Sendable () -> Void = {}
}

/// Card sessions, one at a time on a serial queue of their own (PC/SC calls block), for
/// the daemon. The screen hears about everything through the one ordered `ScreenFeed`:
/// changes are published synchronously, in the order they are made.
///
/// `@unchecked Sendable`, and why that is sound: every `let` is of a `Sendable` type and
/// `after` is behind a `Mutex`. The three `var`s below (`context`, `cardReader`, `bill`) are
/// confined to the serial `queue`: they are private, and every method that touches them runs
/// its body through `perform` or `queue.async` (the card events, the bill actions), or is
/// itself only called from such a body (`onCard`, `chargeNow`, `finish…`). The compiler
/// cannot see a dispatch queue's confinement; an actor cannot replace it, because PC/SC
/// calls block for seconds and must not hold a thread of the concurrency pool.
final class Engine: @unchecked Sendable {
    let kiosk: Kiosk
    let feed: ScreenFeed
    let filter: ReaderFilter
    let logger: Logger
    private let afterRecord = Mutex(AfterRecord())
    /// What to do after a record is queued; set once by the daemon's start-up.
    var after: AfterRecord {
        get { afterRecord.withLock { $0 } }
        set { afterRecord.withLock { $0 = newValue } }
    }
    let receipts: ReceiptDesk
    private let queue = DispatchQueue(label: "kioskd.card-sessions")
    // Confined to `queue`:
    private var context: PCSCContext?
    private var cardReader: String?
    private var bill: ScreenState.Bill?
    /// The result on the screen now (nil: none), numbered so a timer set for an earlier one
    /// does not clear a later one; and the status a slip would print.
    private var shown: (number: UInt64, result: ScreenState.Result)?
    private var shownNumber: UInt64 = 0
    private var lastStatus: (card: PresentedCard, decision: StatusDecision)?
    /// The legal-aid application just filed on the card on the reader, while it can be withdrawn.
    private var cancellable: (recordID: String, cardNumber: String, until: DispatchTime)?
    /// Seconds the guidance stays after the card is taken out (the person's data is gone by then).
    static let afterRemovalSeconds = 8

    init(kiosk: Kiosk, feed: ScreenFeed, filter: ReaderFilter, logger: Logger, receipts: ReceiptDesk) {
        self.kiosk = kiosk
        self.receipts = receipts
        self.feed = feed
        self.filter = filter
        self.logger = logger
    }

    /// Runs `body` on the session queue.
    func perform<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in queue.async { c.resume(with: Result { try body() }) } }
    }

    /// Liveness (the watchdog): `answered` runs on the session queue once everything queued
    /// before it has run. A session stuck in PC/SC never lets it run.
    func probe(_ answered: @escaping @Sendable () -> Void) { queue.async(execute: answered) }

    private func publish(_ change: @escaping ScreenChange) { feed.publish(change) }

    private func onCard<T>(_ reader: String, _ body: (CardChannel) throws -> T) throws -> T {
        if context == nil || context?.isValid == false { context = try PCSCContext() }
        guard let context else { throw CardError.serviceUnavailable }
        let connection = try context.connect(reader: reader)
        return try connection.withTransaction { try body($0) }
    }

    // MARK: events (called from the reader service)

    func cardInserted(_ reader: String) async {
        _ = try? await perform { [self] in
            cardReader = reader
            shown = nil
            lastStatus = nil
            cancellable = nil
            publish { $0.cardPresent = true; $0.reader = reader; $0.phase = "reading"; $0.result = nil; $0.notice = nil }
            if let bill, kiosk.device.config.profile == .hospital {
                chargeNow(reader, bill)
            } else {
                checkNow(reader)
            }
        }
    }

    func cardRemoved(_ reader: String) async {
        _ = try? await perform { [self] in
            guard cardReader == reader else { return }
            cardReader = nil
            lastStatus = nil
            cancellable = nil
            publish { $0.cardPresent = false; if $0.phase == "reading" { $0.phase = "idle" } }
            // Issue 10: the person's result leaves the screen with the card.
            if var current = shown?.result, !current.redacted {
                current.redact()
                show(current, for: Self.afterRemovalSeconds)
            }
        }
    }

    // MARK: the screen's result (on the queue)

    private var settings: ScreenSettings { kiosk.device.config.screenSettings }

    /// Puts a result on the screen with what to do next and its voice prompt, and clears it
    /// after `seconds` (default: the configured result time) unless another replaced it.
    private func show(_ result: ScreenState.Result, for seconds: Int? = nil) {
        var r = result
        if !r.redacted {
            let g = Guidance.of(code: r.code, profile: kiosk.device.config.profile, settings: settings,
                                patientPaysFen: r.patientPaysFen, action: r.action)
            r.headline = g.headline
            r.next = g.next
            r.voice = g.voice
        } else {
            r.headline = Guidance.of(code: r.code, profile: kiosk.device.config.profile, settings: settings, action: r.action).headline
        }
        shownNumber &+= 1
        let number = shownNumber
        if !r.redacted { r.number = number }
        shown = (number, r)
        let final = r
        publish { $0.phase = "result"; $0.result = final }
        queue.asyncAfter(deadline: .now() + .seconds(seconds ?? settings.resultSeconds)) { [self] in
            guard shown?.number == number else { return }
            shown = nil
            publish { if $0.phase == "result" { $0.phase = "idle" }; $0.result = nil }
        }
    }

    /// Withdraws the legal-aid application just filed with the card on the reader (issue 10),
    /// within `cancel_seconds` of filing. Record numbers have no gaps and nothing recorded is
    /// ever taken back, so the withdrawal is a record of its own: an `alert`
    /// `legal_aid_withdrawn` naming the application, uploaded after it; the resident gets a slip.
    func cancelLegalAid() async throws {
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
            result.message = "申请已撤销 Application withdrawn"
            result.cancellable = false
            result.receipt = nil
            show(result)
        }
    }

    /// A status slip of the card on the reader (township, issue 10): this year's usage and
    /// what is left, from the card and the snapshot. Settles nothing, carries no code.
    func printStatusSlip() async throws -> String {
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

    func serviceLost() async {
        _ = try? await perform { [self] in
            context = nil
            cardReader = nil
            publish { $0.notice = "读卡服务中断，正在恢复 Card service (pcscd) lost, reconnecting"; $0.cardPresent = false }
        }
    }

    func serviceRestored() async {
        _ = try? await perform { [self] in publish { $0.notice = nil } }
    }

    // MARK: actions (called from HTTP)

    enum ActionError: Error, CustomStringConvertible {
        case billWaiting(String), noCard, wrongProfile(String), nothingToCancel, tooLate(Int)
        var description: String {
            switch self {
            case .billWaiting(let r): return "bill \(r) is still waiting for a card"
            case .noCard: return "no card on the reader"
            case .wrongProfile(let p): return "not available on a \(p) kiosk"
            case .nothingToCancel: return "no application filed with the card on the reader"
            case .tooLate(let s): return "an application can be withdrawn here only within \(s) s of filing"
            }
        }
        var httpStatus: Int {
            switch self {
            case .billWaiting, .noCard, .nothingToCancel, .tooLate: return 409
            case .wrongProfile: return 404
            }
        }
    }

    /// A bill from the hospital system (already checked by `BillRequest.parse`; `Kiosk.charge`
    /// checks it again): charged when a card is (or already was) presented.
    func submitBill(_ request: BillRequest) async throws -> ScreenState.Bill {
        guard kiosk.device.config.profile == .hospital else { throw ActionError.wrongProfile("township") }
        try BillError.check(billFen: request.billFen, billReference: request.billReference)
        return try await perform { [self] in
            if let bill, bill.billReference != request.billReference { throw ActionError.billWaiting(bill.billReference) }
            let b = ScreenState.Bill(billReference: request.billReference, billFen: request.billFen)
            bill = b
            shown = nil
            publish { $0.bill = b; $0.phase = "idle"; $0.result = nil }
            if let reader = cardReader { chargeNow(reader, b) }
            return b
        }
    }

    func cancelBill() async throws {
        try await perform { [self] in bill = nil; publish { $0.bill = nil } }
    }

    func applyLegalAid(matter: String, phone: String?) async throws {
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
                    result.message = "已提交法律援助申请 Legal-aid application filed (优先受理、优先审批、优先指派)"
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

    // MARK: sessions (on the queue)

    private func checkNow(_ reader: String) {
        do {
            let o = try onCard(reader) { try kiosk.check($0) }
            count(o.decision.code.rawValue)
            var result = Self.result("check", o.decision, card: o.card)
            lastStatus = (o.card, o.decision)
            result.slip = kiosk.device.config.profile == .township
            show(result)
        } catch { fail(error, action: "check") }
    }

    private func chargeNow(_ reader: String, _ b: ScreenState.Bill) {
        do {
            let o = try onCard(reader) { try kiosk.charge($0, billFen: b.billFen, billReference: b.billReference) }
            count(o.decision.code.rawValue)
            var result = ScreenState.Result(action: "charge", code: o.decision.code.rawValue, message: o.decision.code.message,
                                            detail: o.decision.detail, cardNumber: Masking.cardNumber(o.card.facts.cardNumber),
                                            holder: Masking.name(o.card.readout.holder.name), cardType: o.card.facts.kind.rawValue)
            result.billFen = o.alreadySubsidised ? o.decision.billFen : b.billFen
            result.subsidyFen = o.decision.subsidyFen
            result.patientPaysFen = o.decision.isGranted ? o.decision.patientPaysFen : b.billFen
            result.records = o.records.map(\.recordID)
            if o.decision.isGranted {
                bill = nil
                // Allowance left after this subsidy, for the receipt and the screen.
                let left = (try? kiosk.standing(of: o.card))?.programs.map(Self.line) ?? []
                result.programs = left
                // A bill already subsidised (a torn write the card just confirmed, or the same
                // bill sent again) ends like a fresh one: its receipt if none was printed yet.
                let toPrint = o.alreadySubsidised ? o.records.filter { !printed($0.recordID) } : o.records
                if toPrint.isEmpty {
                    result.receipt = "already printed"
                    logger.info("receipt already printed (kioskctl receipt print reprints it)", metadata: ["records": "\(result.records)"])
                } else {
                    result.receipt = receiptWords(receipts.issue(records: toPrint, holderName: o.card.readout.holder.name,
                                                                 matterName: nil, now: kiosk.clock.now()), records: toPrint.map(\.recordID))
                }
                if o.alreadySubsidised {
                    logger.notice("bill already subsidised for this card: ended with its records", metadata: [
                        "bill": "\(b.billReference)", "records": "\(result.records)"])
                }
                after.recordsQueued()
                publish { $0.bill = nil }
            } else if o.decision.code == .limitExhausted || o.decision.code == .notEligible {
                bill = nil   // this card cannot pay it: the cashier takes it
                publish { $0.bill = nil }
            }
            show(result)
        } catch {
            // A bill that can never be charged here (subsidised already with another card, or
            // not a valid bill) must not wait for the next patient's card.
            switch error {
            case LedgerError.duplicateBill, is BillError:
                bill = nil
                publish { $0.bill = nil }
            default: break
            }
            fail(error, action: "charge")
        }
    }

    /// Whether a record's receipt came out of the printer.
    private func printed(_ recordID: String) -> Bool {
        guard let info = try? kiosk.device.store.receiptInfo(recordID) else { return false }
        return info.printedAt != nil && info.printError == nil
    }

    /// Every failure through the one mapping (`Outcomes`). The detail of a decision is the
    /// patient's (停保 …); the detail of an operating failure is for the technician's log only.
    private func fail(_ error: Error, action: String) {
        let report = Outcomes.report(error)
        let isDecision = ReasonCode(rawValue: report.code) != nil
        var result = ScreenState.Result(action: action, code: report.code, message: report.message, detail: isDecision ? report.detail : "")
        if let r = error as? CardRefusal { result.cardNumber = r.cardNumber.map(Masking.cardNumber) }
        let metadata: Logger.Metadata = ["action": "\(action)", "code": "\(report.code)", "detail": "\(report.detail)"]
        if report.code == "store_error" || report.code == "disk_full" || report.code == "internal_error" {
            logger.critical("session failed", metadata: metadata)
        } else if isDecision {
            logger.info("session refused", metadata: metadata)
        } else {
            logger.error("session failed", metadata: metadata)
        }
        count(result.code)
        show(result)
    }

    /// A receipt's outcome in the screen's words: where it went and why it failed go to the log.
    private func receiptWords(_ outcomes: [ReceiptDesk.Outcome], records: [String]) -> String {
        for o in outcomes { logger.info("receipt", metadata: ["records": "\(records)", "outcome": "\(o.text)"]) }
        return outcomes.allSatisfy { if case .printed = $0 { return true } else { return false } } ? "printed" : "not printed"
    }

    private func count(_ code: String) {
        Counter(label: "kiosk_decisions_total", dimensions: [("code", code)]).increment()
    }

    static func result(_ action: String, _ d: StatusDecision, card: PresentedCard) -> ScreenState.Result {
        var r = ScreenState.Result(action: action, code: d.code.rawValue, message: d.code.message, detail: d.detail,
                                   cardNumber: Masking.cardNumber(card.facts.cardNumber), holder: Masking.name(card.readout.holder.name),
                                   cardType: card.facts.kind.rawValue)
        r.programs = d.programs.map(Self.line)
        return r
    }

    static func line(_ p: ProgramStatus) -> ScreenState.ProgramLine {
        ScreenState.ProgramLine(code: p.program.code, name: p.program.name, remainingFen: p.remainingFen, limitFen: p.program.limitFen,
                                usedFen: p.remainingFen == nil ? nil : p.usedFen,
                                matters: p.program.matters?.map { ["code": $0.code, "name": $0.name] })
    }
}
