import ArgumentParser
import BenefitCard
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import SmartCard

/// `--state-dir`, shared by every command that uses the device.
struct StateOptions: ParsableArguments {
    @Option(help: "State folder (default /var/lib/benefit-kiosk, or BENEFIT_KIOSK_STATE_DIR).")
    var stateDir: String?

    var url: URL {
        URL(fileURLWithPath: stateDir ?? ProcessInfo.processInfo.environment["BENEFIT_KIOSK_STATE_DIR"] ?? "/var/lib/benefit-kiosk")
    }

    func device() throws -> Device {
        do { return try Device(stateDir: url) } catch let e as DeviceError {
            throw CommandFailure(message: e.description, status: .notReady)
        } catch { throw CommandFailure(message: "\(StoreError(error))", status: .storage) }
    }

    func kiosk() throws -> Kiosk {
        let clock: KioskClock
        do { clock = try KioskClock.fromEnvironment() } catch { throw CommandFailure(message: "\(error)", status: .usage) }
        return Kiosk(device: try device(), clock: clock)
    }
}

/// Connects to the card on the chosen reader and runs `body` in an exclusive transaction.
func withCard<T>(_ options: ReaderOptions, _ body: (CardChannel) throws -> T) throws -> T {
    let ctx: PCSCContext
    do { ctx = try PCSCContext() } catch { throw pcscFailure(error) }
    let reader = try InspectReport.pickReader(ctx, options)
    do {
        let connection = try ctx.connect(reader: reader)
        return try connection.withTransaction { try body(options.traced($0)) }
    } catch let f as CommandFailure { throw f
    } catch let e as PCSCError { throw pcscFailure(e)
    } catch let e as CardError where e == .serviceUnavailable || e == .readerGone { throw pcscFailure(e)
    } catch { throw error }   // mapped once, by runCardOperation (Outcomes)
}

func yuan(_ fen: Fen) -> String { String(format: "%@%lld.%02lld", fen < 0 ? "-" : "", abs(fen) / 100, abs(fen) % 100) }

/// Runs a card operation, printing a card-level refusal (unreadable, not authentic, removed)
/// as a decision with its code.
func runCardOperation(json: Bool, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let f as CommandFailure {
        FileHandle.standardError.write(Data("kioskctl: \(f.message)\n".utf8))
        throw ExitCode(f.status.rawValue)
    } catch {
        // One mapping (KioskCore's Outcomes), the same as kioskd's screen and HTTP answers.
        let r = Outcomes.report(error)
        if json {
            var o: [String: Any] = ["decision": r.code, "message": r.message, "detail": r.detail]
            if let n = (error as? CardRefusal)?.cardNumber { o["card_number"] = Masking.cardNumber(n) }
            printJSON(o)
        } else if error is CardRefusal {
            print("\(r.code): \(r.message)\n  \(r.detail)")
        } else {
            FileHandle.standardError.write(Data("kioskctl: \(r.code): \(r.detail)\n".utf8))
        }
        throw ExitCode(r.exit.rawValue)
    }
}

func cardJSON(_ c: PresentedCard) -> [String: Any] {
    var o: [String: Any] = [
        "card_number": Masking.cardNumber(c.facts.cardNumber), "card_type": c.facts.kind.rawValue,
        "holder_name": Masking.name(c.readout.holder.name), "category": c.facts.category, "period": c.period,
    ]
    if let t = c.usageTrust, case .untrusted = t { o["usage_record"] = t.description }
    if !c.resolved.isEmpty {
        o["resolved_pending"] = c.resolved.map { ["deduction": $0.deductionID, "committed": $0.committed] }
    }
    return o
}

func statusJSON(_ d: StatusDecision) -> [String: Any] {
    var o: [String: Any] = ["decision": d.code.rawValue, "message": Guidance.text(code: d.code.rawValue)]
    if !d.detail.isEmpty { o["detail"] = d.detail }
    var programs: [[String: Any]] = []
    for p in d.programs {
        var e: [String: Any] = ["code": p.program.code, "name": p.program.name]
        if let r = p.remainingFen { e["remaining_fen"] = r }
        if let u = p.usedFen { e["used_fen"] = u }
        if let l = p.program.limitFen { e["limit_fen"] = l }
        if let m = p.program.matters {
            e["matters"] = m.map { ["code": $0.code, "name": $0.name] }
            e["priority"] = true
        }
        programs.append(e)
    }
    o["programs"] = programs
    return o
}

func statusText(_ d: StatusDecision) -> String {
    var lines = ["\(d.code.rawValue): \(Guidance.text(code: d.code.rawValue))" + (d.detail.isEmpty ? "" : " (\(d.detail))")]
    for p in d.programs {
        if let r = p.remainingFen {
            lines.append("  \(p.program.code) \(p.program.name): remaining \(yuan(r)) of \(yuan(p.program.limitFen ?? 0)) yuan this year")
        } else if let m = p.program.matters {
            lines.append("  \(p.program.code) \(p.program.name): \(m.count) matters, 优先受理、优先审批、优先指派")
            for x in m { lines.append("    \(x.code)  \(x.name)") }
        }
    }
    return lines.joined(separator: "\n")
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Status of the card on the reader: valid or not and why, allowance left, legal-aid matters.")
    @OptionGroup var state: StateOptions
    @OptionGroup var readerOptions: ReaderOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try runCardOperation(json: json) {
            let kiosk = try state.kiosk()
            let outcome = try withCard(readerOptions) { try kiosk.check($0) }
            if json { printJSON(cardJSON(outcome.card).merging(statusJSON(outcome.decision)) { $1 }) }
            else {
                print("Card \(Masking.cardNumber(outcome.card.facts.cardNumber)) (\(outcome.card.facts.kind.rawValue)), holder \(Masking.name(outcome.card.readout.holder.name))")
                print(statusText(outcome.decision))
            }
            if !outcome.decision.isEligible { throw ExitCode(ExitStatus.declined.rawValue) }
        }
    }
}

struct Charge: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Subsidise a hospital bill with the card on the reader (writes the card, queues the settlement record).")
    @OptionGroup var state: StateOptions
    @OptionGroup var readerOptions: ReaderOptions
    @Option(help: "The bill in fen (1 yuan = 100 fen).") var billFen: Int64
    @Option(help: "The hospital's bill or visit number.") var billRef: String
    @Flag(help: "Do not print the receipt (print it later with kioskctl receipt print).") var noPrint = false
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        // The same rule as every bill, checked by Kiosk.charge (BillError).
        do { try BillError.check(billFen: billFen, billReference: billRef) } catch let e as BillError {
            switch e {
            case .amount: throw ValidationError("--bill-fen must be a positive number of fen, at most \(Kiosk.maximumBillFen)")
            case .reference: throw ValidationError("--bill-ref: \(e)")
            }
        }
    }

    func run() throws {
        try runCardOperation(json: json) {
            let kiosk = try state.kiosk()
            let o = try withCard(readerOptions) { try kiosk.charge($0, billFen: billFen, billReference: billRef) }
            let d = o.decision
            var receipts: [String] = []
            if d.isGranted && !noPrint {
                receipts = ReceiptDesk(device: kiosk.device).issue(records: o.records, holderName: o.card.readout.holder.name,
                                                                    matterName: nil, now: kiosk.clock.now()).map(\.text)
            }
            if json {
                var j = cardJSON(o.card)
                if !receipts.isEmpty { j["receipts"] = receipts }
                j["decision"] = d.code.rawValue
                j["message"] = Guidance.text(code: d.code.rawValue)
                if !d.detail.isEmpty { j["detail"] = d.detail }
                j["bill_fen"] = d.billFen
                j["subsidy_fen"] = d.subsidyFen
                j["patient_pays_fen"] = d.isGranted ? d.patientPaysFen : d.billFen
                j["allocations"] = d.allocations.map { ["program": $0.program, "subsidy_fen": $0.subsidyFen, "used_before_fen": $0.usedBeforeFen, "used_after_fen": $0.usedAfterFen] }
                j["records"] = o.records.map(\.recordID)
                if let s = o.cardSequence { j["card_sequence"] = Int(s) }
                if let w = o.writeRefusal { j["write_refusal"] = ["command": w.command.rawValue, "sw": "\(w.status)"] }
                if o.alreadySubsidised { j["already_subsidised"] = true }
                printJSON(j)
            } else {
                print("\(d.code.rawValue): \(Guidance.text(code: d.code.rawValue))" + (d.detail.isEmpty ? "" : " (\(d.detail))"))
                print("  bill \(yuan(d.billFen)) yuan, subsidy \(yuan(d.subsidyFen)), patient pays \(yuan(d.isGranted ? d.patientPaysFen : d.billFen))")
                for a in d.allocations { print("  \(a.program): \(yuan(a.subsidyFen)) (used \(yuan(a.usedBeforeFen)) → \(yuan(a.usedAfterFen)))") }
                if !o.records.isEmpty { print("  records: \(o.records.map(\.recordID).joined(separator: ", ")); card sequence \(o.cardSequence ?? 0)") }
                for r in receipts { print("  receipt: \(r)") }
            }
            if !d.isGranted { throw ExitCode(Outcomes.report(d.code).exit.rawValue) }
        }
    }
}

struct ApplyLegalAid: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply-legal-aid", abstract: "File a legal-aid application with the card on the reader.")
    @OptionGroup var state: StateOptions
    @OptionGroup var readerOptions: ReaderOptions
    @Option(help: "Matter code (kioskctl check lists them).") var matter: String
    @Option(help: "Contact phone (optional).") var phone: String?
    @Flag(help: "Do not print the ticket.") var noPrint = false
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try runCardOperation(json: json) {
            let kiosk = try state.kiosk()
            let o = try withCard(readerOptions) { try kiosk.applyLegalAid($0, matter: matter, contactPhone: phone) }
            var receipts: [String] = []
            if let r = o.record, !noPrint {
                let name = o.decision.programs.compactMap { $0.program.matters?.first { $0.code == matter }?.name }.first
                receipts = ReceiptDesk(device: kiosk.device).issue(records: [r], holderName: o.card.readout.holder.name,
                                                                    matterName: name, now: kiosk.clock.now()).map(\.text)
            }
            if json {
                var j = cardJSON(o.card).merging(statusJSON(o.decision)) { $1 }
                if let r = o.record { j["record"] = r.recordID; j["matter"] = matter; j["priority"] = true; j["receipts"] = receipts }
                printJSON(j)
            } else if let r = o.record {
                print("applied: legal-aid application \(r.recordID), matter \(matter), 优先受理、优先审批、优先指派")
                for t in receipts { print("  ticket: \(t)") }
            } else {
                print(statusText(o.decision))
            }
            if o.record == nil { throw ExitCode(ExitStatus.declined.rawValue) }
        }
    }
}

struct Recover: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Resolve pending deductions (card pulled or power cut mid-write) with the card on the reader.")
    @OptionGroup var state: StateOptions
    @OptionGroup var readerOptions: ReaderOptions

    func run() throws {
        try runCardOperation(json: false) {
            let kiosk = try state.kiosk()
            let before = try kiosk.device.store.pendingDeductions()
            if before.isEmpty { print("no pending deductions"); return }
            let card = try withCard(readerOptions) { try kiosk.present($0) }
            for r in card.resolved { print("deduction \(r.deductionID): \(r.committed ? "committed (the card holds the write)" : "voided (the card does not hold it)")") }
            for d in try kiosk.device.store.pendingDeductions() {
                print("still pending: deduction \(d.id), card \(Masking.cardNumber(d.cardNumber)), since \(d.createdAt): present that card")
            }
        }
    }
}
