import Crypto
import KioskProtocol
import Foundation
import KioskStore
import Receipts

/// Receipts for settlement records (receipt spec): the content from the record and its
/// receipt info, the signed QR, ESC/POS to the device's printer. A printer fault is shown,
/// raised as an `alert`, and the receipt can be printed again; the subsidy itself is
/// already committed.
public struct ReceiptDesk {
    /// The device: its key signs the receipts, its store holds the records.
    public let device: Device
    /// The paper width (58 or 80 mm).
    public let paper: Paper
    /// The printer spec (`file:`, `tcp:`, `device:`); the device's by default.
    public let printerSpec: String

    /// A desk printing to `printerSpec`, or to the device's printer when nil, on `paper`, or
    /// the device's paper width when nil.
    public init(device: Device, paper: Paper? = nil, printerSpec: String? = nil) {
        self.device = device
        self.paper = paper ?? device.config.paperWidth.paper
        self.printerSpec = printerSpec ?? device.config.printer
    }

    /// The device has no printer (`--printer none`): nothing is sent, the records stand.
    var noPrinter: Bool { printerSpec == DeviceConfig.noPrinter }

    /// A print's result: printed (with the file written, for a file printer) or failed with why.
    public enum Outcome: Sendable, Equatable {
        /// Printed; `file` is the file a file printer wrote, nil for a real printer.
        case printed(file: String?)
        /// Not printed, with why (a `printer_fault` alert was raised).
        case failed(String)
        /// Not printed: the kiosk has no printer (`--printer none`), which is no fault.
        case noPrinter
        /// The result in words, for the technician.
        public var text: String {
            switch self {
            case .printed(let f): return f.map { "printed (\($0))" } ?? "printed"
            case .failed(let why): return "not printed: \(why)"
            case .noPrinter: return "not printed: this kiosk has no printer (--printer none)"
            }
        }
    }

    /// Why a receipt cannot be made: no such record, or a kind of record without a receipt (alerts).
    public enum DeskError: Error, CustomStringConvertible {
        case noRecord(String), notPrintable(String)
        /// The refusal in one line.
        public var description: String {
            switch self {
            case .noRecord(let r): return "no record \(r) on this device"
            case .notPrintable(let k): return "\(k) records have no receipt"
            }
        }
    }

    /// The receipt of a settlement record (receipt spec v2): every signed figure is the record's own —
    /// `r` its seq, `b`/`s`/`p` its bill_fen/subsidy_fen/patient_pays_fen, `l` its program's allowance left
    /// after it (kept in the receipt info when first issued; else max(0, limit − used_after_fen) with the
    /// installed snapshot's limit), for a reversal `v` the seq of the record in `reverses` and `s` its amount.
    public func content(recordID: String, extraLines: [String] = []) throws -> ReceiptContent {
        let store = device.store
        guard let record = try store.record(recordID) else { throw DeskError.noRecord(recordID) }
        let settlement = try SettlementRecord.forReceipt(json: record.body)
        let info = try store.receiptInfo(recordID)
        let deviceID = device.config.deviceID
        // What people know the institution by (issue 20): its display name, else its code.
        let institution = device.config.screenSettings.displayName ?? device.config.institution
        switch settlement.content {
        case .medicalSubsidy(let m):
            let program = try store.receiptProgram(m.program)
            let left = info?.allowanceLeftFen ?? allowanceLeft(m, program: program)
            return try RecordReceipt.content(record: settlement, deviceID: deviceID, institution: institution, holderName: info?.holderMasked ?? "",
                                             allowanceLeftFen: left, programName: program?.name, extraLines: extraLines)
        case .subsidyReversal(let r):
            let original = try store.record(r.reverses).map { try SettlementRecord.forReceipt(json: $0.body) }
            let own = info.map(\.holderMasked).flatMap { $0.isEmpty ? nil : $0 }
            let holder = try own ?? store.receiptInfo(r.reverses)?.holderMasked ?? ""
            return try RecordReceipt.content(record: settlement, deviceID: deviceID, institution: institution, holderName: holder,
                                             reversed: original, extraLines: extraLines)
        case .legalAidApplication(let l):
            let name = try info?.matterName
                ?? store.receiptProgram(l.program)?.matters?.first { $0.code == l.matter }?.name
            // Where and when to go next (issue 10), from the kiosk's configuration.
            let settings = device.config.screenSettings
            let visit = ["请到 \(settings.legalAidOffice) 办理", "接待时间 \(settings.legalAidHours)", "请带本回执和卡片"]
            return try RecordReceipt.content(record: settlement, deviceID: deviceID, institution: institution, holderName: info?.holderMasked ?? "",
                                             matterName: name, extraLines: extraLines + visit)
        case .alert:
            throw DeskError.notPrintable(record.kind.rawValue)
        }
    }

    /// max(0, limit − used_after_fen) of a subsidy record, with the program's limit in the installed snapshot.
    private func allowanceLeft(_ subsidy: SettlementRecord.MedicalSubsidy, program: Program?) -> Int64? {
        guard let limit = program?.limitFen else { return nil }
        return RecordReceipt.allowanceLeft(record: subsidy, limitFen: limit)
    }

    /// What the receipt needs beyond the record, as it stands now: the allowance left for a subsidy record,
    /// the holder of the reversed record for a reversal.
    private func receiptInfo(for record: StoredRecord, holderMasked: String?, matterName: String?) throws -> ReceiptInfo {
        let store = device.store
        let settlement = try SettlementRecord.forReceipt(json: record.body)
        var holder = holderMasked
        var left: Int64?
        switch settlement.content {
        case .medicalSubsidy(let m):
            left = allowanceLeft(m, program: try store.receiptProgram(m.program))
        case .subsidyReversal(let r):
            if holder?.isEmpty ?? true { holder = try store.receiptInfo(r.reverses)?.holderMasked }
        case .legalAidApplication, .alert: break
        }
        return ReceiptInfo(recordID: record.recordID, holderMasked: holder ?? "", allowanceLeftFen: left, matterName: matterName)
    }

    /// After a subsidy, a reversal or an application: keeps what the receipts need (masked; for a subsidy its
    /// program's allowance left after it, from the record and the snapshot's limit) and prints one receipt per
    /// record — a bill shared by several programs gets one per program.
    ///
    /// A bill's subsidy records print on **one slip** (receipt spec §1, amendment 2026-12-06):
    /// each program's line and one QR per record; the outcome is the same for each record.
    public func issue(records: [StoredRecord], holderName: String, matterName: String?, now: Date) -> [Outcome] {
        for r in records {
            do {
                try device.store.saveReceiptInfo(try receiptInfo(for: r, holderMasked: Masking.name(holderName), matterName: matterName))
            } catch { return records.map { _ in .failed("\(error)") } }
        }
        if !records.isEmpty, records.allSatisfy({ $0.kind == .medicalSubsidy }) {
            let outcome = printBill(recordIDs: records.map(\.recordID), now: now)
            return records.map { _ in outcome }
        }
        return records.map { print(recordID: $0.recordID, now: now) }
    }

    /// Prints one bill's slip: every subsidy record of the bill, one QR each. Records the
    /// outcome on each record; raises `printer_fault` on failure.
    public func printBill(recordIDs: [String], now: Date, reprint: Bool = false) -> Outcome {
        if noPrinter { return .noPrinter }
        let store = device.store
        do {
            let contents = try recordIDs.map { try content(recordID: $0) }
            let slip = try BillSlip(receipts: contents, institution: device.config.screenSettings.displayName,
                                    extraLines: reprint ? ["重打凭条 \(ReceiptFormat.chinaTime(now))"] : [])
            let rendered = try slip.render(key: device.signingKey, paper: paper)
            let outcome = try send(rendered.escpos)
            for id in recordIDs { try? store.markPrinted(recordID: id, at: now, error: nil) }
            return outcome
        } catch {
            let why = "\(error)"
            for id in recordIDs { try? store.markPrinted(recordID: id, at: now, error: why) }
            _ = try? store.recordAlert(device: device.context, code: "printer_fault", cardNumber: nil,
                                       detail: "receipt \(recordIDs.joined(separator: ",")): \(why)", now: now)
            return .failed(why)
        }
    }

    /// Sends bytes to the printer (status first where the link is two-way); to a file printer
    /// with a preview beside them: the text, and each QR code as a PNG (`.png`, `-2.png`, …).
    private func send(_ escpos: [UInt8]) throws -> Outcome {
        let transport = try Printer.parse(spec: printerSpec)
        if let status = try transport.status() { try status.check() }
        guard let filePrinter = transport as? FilePrinter else {
            try transport.send(escpos)
            return .printed(file: nil)
        }
        let url = try filePrinter.write(escpos)
        let preview = try ReceiptPreview(escpos: escpos)
        for (i, raster) in preview.rasters.enumerated() {
            let name = url.deletingPathExtension().lastPathComponent + (i == 0 ? "" : "-\(i + 1)")
            try PNG.encode(raster).write(to: url.deletingLastPathComponent().appendingPathComponent(name).appendingPathExtension("png"))
        }
        try Data(preview.text.utf8).write(to: url.deletingPathExtension().appendingPathExtension("txt"))
        return .printed(file: url.path)
    }

    /// Contract v1's call: the caller's allowance figure (a sum over every program) is ignored; each subsidy
    /// record's own `l` is used instead.
    @available(*, deprecated, message: "receipts take each record's own allowance left; use issue(records:holderName:matterName:now:)")
    public func issue(records: [StoredRecord], holderName: String, allowanceLeftFen: Int64?, matterName: String?, now: Date) -> [Outcome] {
        issue(records: records, holderName: holderName, matterName: matterName, now: now)
    }

    /// Prints a record's receipt; records the outcome; raises `printer_fault` on failure.
    public func print(recordID: String, now: Date, reprint: Bool = false) -> Outcome {
        let store = device.store
        do {
            // A record printed for the first time from the command line (`--no-print` before): keep what its
            // receipt says now, so that a reprint says the same.
            if try store.receiptInfo(recordID) == nil, let record = try store.record(recordID),
               [.medicalSubsidy, .subsidyReversal, .legalAidApplication].contains(record.kind) {
                try store.saveReceiptInfo(try receiptInfo(for: record, holderMasked: nil, matterName: nil))
            }
            // A subsidy prints with the rest of its bill, on one slip.
            if let record = try store.record(recordID), record.kind == .medicalSubsidy, let deduction = record.deductionID {
                let bill = try store.records(deductionID: deduction).map(\.recordID)
                if bill.count > 1 || bill == [recordID] { return printBill(recordIDs: bill, now: now, reprint: reprint) }
            }
            if noPrinter { return .noPrinter }
            let content = try content(recordID: recordID, extraLines: reprint ? ["重打凭条 \(ReceiptFormat.chinaTime(now))"] : [])
            let rendered = try ReceiptRenderer.render(content, key: device.signingKey, paper: paper)
            let outcome = try send(rendered.escpos)
            try? store.markPrinted(recordID: recordID, at: now, error: nil)
            return outcome
        } catch {
            let why = "\(error)"
            try? store.markPrinted(recordID: recordID, at: now, error: why)
            _ = try? store.recordAlert(device: device.context, code: "printer_fault", cardNumber: nil, detail: "receipt \(recordID): \(why)", now: now)
            return .failed(why)
        }
    }

    /// A resident's status slip (issue 10): plain lines, no code (it settles nothing). A
    /// printer fault is raised as an alert like a receipt's.
    public func printSlip(lines: [String], now: Date) -> Outcome {
        if noPrinter { return .noPrinter }
        do {
            let bytes = try ESCPOS.slip(lines: lines, paper: paper)
            let transport = try Printer.parse(spec: printerSpec)
            if let status = try transport.status() { try status.check() }
            if let filePrinter = transport as? FilePrinter {
                let url = try filePrinter.write(bytes)
                try Data(try ReceiptPreview(escpos: bytes).text.utf8).write(to: url.deletingPathExtension().appendingPathExtension("txt"))
                return .printed(file: url.path)
            }
            try transport.send(bytes)
            return .printed(file: nil)
        } catch {
            _ = try? device.store.recordAlert(device: device.context, code: "printer_fault", cardNumber: nil, detail: "status slip: \(error)", now: now)
            return .failed("\(error)")
        }
    }

    /// Verifies a receipt's JWS against this device's key and the snapshot's device keys.
    public func verify(_ jws: String) throws -> VerifiedReceipt {
        var keys = try device.store.deviceKeys().compactMapValues {
            Data(base64Encoded: $0).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) }
        }
        keys[device.config.deviceID] = device.signingKey.publicKey
        return try ReceiptJWS.verify(jws, keys: keys)
    }
}
