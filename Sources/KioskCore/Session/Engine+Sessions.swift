import BenefitCard
import KioskProtocol
import Foundation
import Synchronization
import KioskStore
import Logging
import Metrics
import enum Receipts.ReceiptFormat
import SmartCard

extension Engine {
    // MARK: sessions (on the queue)

    func checkNow(_ reader: String) {
        do {
            let o = try onCard(reader) { try kiosk.check($0) }
            count(o.decision.code.rawValue)
            var result = Self.result("check", o.decision, card: o.card)
            lastStatus = (o.card, o.decision)
            result.slip = kiosk.device.config.profile == .township && kiosk.device.config.printsSlips
            show(result)
        } catch { fail(error, action: "check") }
    }

    /// A fresh tap for the open bill: read, authenticate, check the patient, decide, and put
    /// the pre-settlement on the screen. Nothing is written (but a torn write of this card,
    /// which the card's presentation resolves; a bill it completes ends granted at once).
    func previewNow(_ reader: String, _ b: OpenBill) {
        chargeNow(reader, b, confirmed: nil)
    }

    /// `confirmed` nil: the tap (a pre-settlement); else the patient's 确认 of those figures,
    /// written only to the card they were computed for.
    func chargeNow(_ reader: String, _ b: OpenBill, confirmed: Confirming?) {
        let step: ChargeStep = confirmed.map { .write(confirmed: $0.allocations) } ?? .preview
        do {
            let o = try onCard(reader) {
                try kiosk.charge($0, billFen: b.billFen, billReference: b.reference, patient: b.patient, step: step,
                                 cardNumber: confirmed?.cardNumber)
            }
            count(o.previewOnly ? "confirm" : o.decision.code.rawValue)
            var result = ScreenState.Result(action: "charge", code: o.decision.code.rawValue, message: Guidance.text(code: o.decision.code.rawValue),
                                            detail: o.decision.detail, cardNumber: Masking.cardNumber(o.card.facts.cardNumber),
                                            holder: Masking.name(o.card.readout.holder.name), cardType: o.card.facts.kind.rawValue)
            result.billFen = o.alreadySubsidised ? o.decision.billFen : b.billFen
            result.subsidyFen = o.decision.subsidyFen
            result.patientPaysFen = o.decision.isGranted ? o.decision.patientPaysFen : b.billFen
            result.records = o.records.map(\.recordID)
            if o.previewOnly {
                showPreSettlement(o, bill: b, result: result)
                return
            }
            if o.decision.isGranted {
                granted(o, bill: b, result: &result)
            } else {
                settle(b, code: o.decision.code.rawValue, cardOnlyClock: o.card.facts.clockAhead != nil && o.card.standing.clockSuspect == nil,
                       result: &result)
            }
            show(result)
        } catch {
            var result = failureResult(error, action: "charge")
            result.billFen = b.billFen
            result.patientPaysFen = b.billFen
            // A bill that can never be charged here (subsidised already with another card, or
            // not a valid bill) must not wait for the next patient's card.
            let code: String
            switch error {
            case LedgerError.duplicateBill: code = "bill_already_subsidised"
            case is BillError: code = "bad_bill"
            default: code = result.code
            }
            settle(b, code: code, cardOnlyClock: false, result: &result)
            show(result)
        }
    }

    /// The pre-settlement: the bill, what the subsidy covers, what the patient pays and the
    /// allowance left after it; 确认 / 取消 for 60 s.
    func showPreSettlement(_ o: ChargeOutcome, bill b: OpenBill, result: ScreenState.Result) {
        var result = result
        var open = b
        open.status = .confirming
        open.code = nil
        confirmationNumber &+= 1
        open.confirming = Confirming(cardNumber: o.card.facts.cardNumber, tap: cardTap ?? 0, allocations: o.decision.allocations,
                                     number: confirmationNumber)
        bill = open
        save(open)
        result.code = "confirm"
        result.billReference = b.reference
        result.confirmation = confirmationNumber
        result.confirmSeconds = timing.confirmSeconds
        result.figuresChanged = o.figuresChanged
        let after = Dictionary(o.decision.allocations.map { ($0.program, $0.usedAfterFen) }, uniquingKeysWith: { $1 })
        let standing = (try? kiosk.standing(of: o.card))?.programs.map(Self.line) ?? []
        result.programs = standing.map { p in
            var q = p
            if let used = after[p.code], let limit = p.limitFen { q.usedFen = used; q.remainingFen = max(0, limit - used) }
            return q
        }
        showConfirmation(result, number: confirmationNumber)
    }

    /// A granted bill: its receipt, the uploader woken, the bill ended `granted`.
    func granted(_ o: ChargeOutcome, bill b: OpenBill, result: inout ScreenState.Result) {
        // Allowance left after this subsidy, for the receipt and the screen.
        result.programs = (try? kiosk.standing(of: o.card))?.programs.map(Self.line) ?? []
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
                "bill": "\(b.reference)", "records": "\(result.records)"])
        }
        after.recordsQueued()
        var done = b
        done.status = .granted
        done.code = o.decision.code.rawValue
        done.subsidyFen = o.decision.subsidyFen
        done.patientPaysFen = o.decision.patientPaysFen
        done.records = result.records
        end(done)
        result.billEnded = true
    }

    /// After a tap that did not grant: the bill ends `refused` (the patient pays the whole
    /// bill at the cashier), stays `waiting` (another tap may do), or is `pending` (a torn
    /// write of this bill: the same card must come back).
    func settle(_ b: OpenBill, code: String, cardOnlyClock: Bool, result: inout ScreenState.Result) {
        var next = b
        next.confirming = nil
        next.code = code
        // A torn write of this bill (or a store that cannot say: fail closed) keeps it pending.
        let torn: Bool
        do { torn = try kiosk.device.store.deduction(billReference: b.reference)?.state == .pending } catch { torn = true }
        if torn {
            next.status = .pending
            bill = next
            save(next)
            return
        }
        switch BillRules.status(afterCode: code, cardOnlyClock: cardOnlyClock) {
        case .refused:
            next.status = .refused
            next.subsidyFen = 0
            next.patientPaysFen = b.billFen
            end(next)
            result.billEnded = true
        default:
            next.status = .waiting
            bill = next
            save(next)
        }
    }

    func showConfirmation(_ result: ScreenState.Result, number: UInt64) {
        var r = result
        let g = Guidance.of(code: "confirm", profile: .hospital, settings: settings, patientPaysFen: r.patientPaysFen, action: "charge")
        r.headline = g.headline
        r.next = g.next
        r.voice = g.voice
        voiceNumber &+= 1
        r.number = voiceNumber
        shownNumber &+= 1
        shown = (shownNumber, r)
        let final = r
        publish { $0.phase = "confirm"; $0.result = final; $0.liftCard = false }
        queue.asyncAfter(deadline: .now() + .seconds(timing.confirmSeconds)) { [self] in
            guard bill?.confirming?.number == number else { return }
            endConfirmation(code: "confirm_timeout")
        }
    }

    /// Stores where the open bill stands and wakes the hospital system's long polls.
    func save(_ b: OpenBill) {
        do { try kiosk.device.store.saveBillOutcome(b.outcome(now: kiosk.clock.now())) } catch {
            logger.critical("bill outcome not stored", metadata: ["bill": "\(b.reference)", "error": "\(error)"])
        }
        changes.bump(b.reference)
    }

    /// The bill ends (granted, refused, cancelled): stored, and the kiosk takes the next one.
    func end(_ b: OpenBill) {
        bill = nil
        save(b)
        try? kiosk.device.store.forgetOldBillOutcomes(now: kiosk.clock.now())
        publish { $0.bill = nil; $0.liftCard = false }
    }

    /// Whether a record's receipt came out of the printer.
    func printed(_ recordID: String) -> Bool {
        guard let info = try? kiosk.device.store.receiptInfo(recordID) else { return false }
        return info.printedAt != nil && info.printError == nil
    }

    /// Every failure through the one mapping (`Outcomes`). The detail of a decision is the
    /// patient's (停保 …); the detail of an operating failure is for the technician's log only.
    func fail(_ error: Error, action: String) { show(failureResult(error, action: action)) }

    func failureResult(_ error: Error, action: String) -> ScreenState.Result {
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
        return result
    }

    /// A receipt's outcome in the screen's words: where it went and why it failed go to the log.
    func receiptWords(_ outcomes: [ReceiptDesk.Outcome], records: [String]) -> String {
        for o in outcomes { logger.info("receipt", metadata: ["records": "\(records)", "outcome": "\(o.text)"]) }
        if outcomes.contains(.noPrinter) { return "no printer" }
        return outcomes.allSatisfy { if case .printed = $0 { return true } else { return false } } ? "printed" : "not printed"
    }

    func count(_ code: String) {
        Counter(label: "kiosk_decisions_total", dimensions: [("code", code)]).increment()
    }

    static func result(_ action: String, _ d: StatusDecision, card: PresentedCard) -> ScreenState.Result {
        var r = ScreenState.Result(action: action, code: d.code.rawValue, message: Guidance.text(code: d.code.rawValue, action: action), detail: d.detail,
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
