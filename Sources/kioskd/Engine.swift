import BenefitCard
import Entitlements
import Foundation
import KioskCore
import KioskStore
import Logging
import Metrics
import SmartCard

/// What to do after a subsidy or an application is recorded: wake the uploader.
struct AfterRecord: Sendable {
    var recordsQueued: @Sendable () -> Void = {}
}

/// Card sessions, one at a time on a serial queue of their own (PC/SC calls block), for
/// the daemon. The screen hears about everything through `ScreenHub`.
final class Engine: @unchecked Sendable {
    let kiosk: Kiosk
    let hub: ScreenHub
    let filter: ReaderFilter
    let logger: Logger
    var after = AfterRecord()
    let receipts: ReceiptDesk
    private let queue = DispatchQueue(label: "kioskd.card-sessions")
    // Confined to `queue`:
    private var context: PCSCContext?
    private var cardReader: String?
    private var bill: ScreenState.Bill?

    init(kiosk: Kiosk, hub: ScreenHub, filter: ReaderFilter, logger: Logger, receipts: ReceiptDesk) {
        self.kiosk = kiosk
        self.receipts = receipts
        self.hub = hub
        self.filter = filter
        self.logger = logger
    }

    /// Runs `body` on the session queue.
    func perform<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in queue.async { c.resume(with: Result { try body() }) } }
    }

    private func publish(_ change: @escaping @Sendable (inout ScreenState) -> Void) {
        let hub = self.hub
        Task { await hub.update(change) }
    }

    private func onCard<T>(_ reader: String, _ body: (CardChannel) throws -> T) throws -> T {
        if context == nil || context?.isValid == false { context = try PCSCContext() }
        let connection = try context!.connect(reader: reader)
        return try connection.withTransaction { try body($0) }
    }

    // MARK: events (called from the reader service)

    func cardInserted(_ reader: String) async {
        _ = try? await perform { [self] in
            cardReader = reader
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
            publish { $0.cardPresent = false; if $0.phase == "reading" { $0.phase = "idle" } }
        }
    }

    func serviceLost() {
        publish { $0.notice = "读卡服务中断，正在恢复 Card service (pcscd) lost, reconnecting"; $0.cardPresent = false }
        queue.async { [self] in context = nil; cardReader = nil }
    }

    func serviceRestored() { publish { $0.notice = nil } }

    // MARK: actions (called from HTTP)

    enum ActionError: Error, CustomStringConvertible {
        case billWaiting(String), noCard, wrongProfile(String), invalid(String)
        var description: String {
            switch self {
            case .billWaiting(let r): return "bill \(r) is still waiting for a card"
            case .noCard: return "no card on the reader"
            case .wrongProfile(let p): return "not available on a \(p) kiosk"
            case .invalid(let why): return why
            }
        }
    }

    /// A bill from the hospital system: charged when a card is (or already was) presented.
    func submitBill(reference: String, fen: Int64) async throws -> ScreenState.Bill {
        guard kiosk.device.config.profile == .hospital else { throw ActionError.wrongProfile("township") }
        guard fen > 0, fen <= Kiosk.maximumBillFen else { throw ActionError.invalid("bill_fen must be 1 to 99999999 fen") }
        guard !reference.isEmpty, reference.count <= 64 else { throw ActionError.invalid("bill_reference must be 1 to 64 characters") }
        return try await perform { [self] in
            if let bill, bill.billReference != reference { throw ActionError.billWaiting(bill.billReference) }
            let b = ScreenState.Bill(billReference: reference, billFen: fen)
            bill = b
            publish { $0.bill = b; $0.phase = "idle"; $0.result = nil }
            if let reader = cardReader { chargeNow(reader, b) }
            return b
        }
    }

    func cancelBill() async throws {
        try await perform { [self] in bill = nil; publish { $0.bill = nil } }
    }

    func applyLegalAid(matter: String, phone: String?) async throws {
        guard !matter.isEmpty, matter.count <= 64 else { throw ActionError.invalid("matter is required") }
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
                    result.receipt = receipts.issue(records: [r], holderName: o.card.readout.holder.name,
                                                    matterName: name, now: kiosk.clock.now()).map(\.text).joined(separator: "; ")
                    after.recordsQueued()
                    result.code = "applied"
                    result.message = "已提交法律援助申请 Legal-aid application filed (优先受理、优先审批、优先指派)"
                }
                count(result.code)
                let final = result
                publish { $0.phase = "result"; $0.result = final }
            } catch { fail(error, action: "legal_aid") }
        }
    }

    // MARK: sessions (on the queue)

    private func checkNow(_ reader: String) {
        do {
            let o = try onCard(reader) { try kiosk.check($0) }
            count(o.decision.code.rawValue)
            let result = Self.result("check", o.decision, card: o.card)
            publish { $0.phase = "result"; $0.result = result }
        } catch { fail(error, action: "check") }
    }

    private func chargeNow(_ reader: String, _ b: ScreenState.Bill) {
        do {
            let o = try onCard(reader) { try kiosk.charge($0, billFen: b.billFen, billReference: b.billReference) }
            count(o.decision.code.rawValue)
            var result = ScreenState.Result(action: "charge", code: o.decision.code.rawValue, message: o.decision.code.message,
                                            detail: o.decision.detail, cardNumber: Masking.cardNumber(o.card.facts.cardNumber),
                                            holder: Masking.name(o.card.readout.holder.name), cardType: o.card.facts.kind.rawValue)
            result.billFen = b.billFen
            result.subsidyFen = o.decision.subsidyFen
            result.patientPaysFen = o.decision.isGranted ? o.decision.patientPaysFen : b.billFen
            result.records = o.records.map(\.recordID)
            if o.decision.isGranted {
                bill = nil
                // Allowance left after this subsidy, for the receipt and the screen.
                let left = (try? kiosk.standing(of: o.card))?.programs.map(Self.line) ?? []
                result.programs = left
                result.receipt = receipts.issue(records: o.records, holderName: o.card.readout.holder.name,
                                                matterName: nil, now: kiosk.clock.now()).map(\.text).joined(separator: "; ")
                after.recordsQueued()
                publish { $0.bill = nil }
            } else if o.decision.code == .limitExhausted || o.decision.code == .notEligible {
                bill = nil   // this card cannot pay it: the cashier takes it
                publish { $0.bill = nil }
            }
            let final = result
            publish { $0.phase = "result"; $0.result = final }
        } catch { fail(error, action: "charge") }
    }

    private func fail(_ error: Error, action: String) {
        let result: ScreenState.Result
        switch error {
        case let r as CardRefusal:
            result = ScreenState.Result(action: action, code: r.code.rawValue, message: r.code.message, detail: r.detail,
                                        cardNumber: r.cardNumber.map(Masking.cardNumber))
        case let e as StoreError:
            result = ScreenState.Result(action: action, code: "store_error", message: "暂停服务 Service paused", detail: e.description)
            logger.critical("store failure", metadata: ["error": "\(e)"])
        default:
            let ce = CardError(error)
            let code: ReasonCode = ce == .cardRemoved ? .cardRemoved : .cardUnreadable
            result = ScreenState.Result(action: action, code: code.rawValue, message: code.message, detail: "\(error)")
        }
        count(result.code)
        publish { $0.phase = "result"; $0.result = result }
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
                                matters: p.program.matters?.map { ["code": $0.code, "name": $0.name] })
    }
}

