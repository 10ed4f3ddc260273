import Crypto
import Foundation
import KioskStore
import Receipts

/// Receipts for settlement records (receipt spec): the content from the record and its
/// receipt info, the signed QR, ESC/POS to the device's printer. A printer fault is shown,
/// raised as an `alert`, and the receipt can be printed again; the subsidy itself is
/// already committed.
public struct ReceiptDesk {
    public let device: Device
    public let paper: Paper
    /// The printer spec (`file:`, `tcp:`, `device:`); the device's by default.
    public let printerSpec: String

    public init(device: Device, paper: Paper = .mm58, printerSpec: String? = nil) {
        self.device = device
        self.paper = paper
        self.printerSpec = printerSpec ?? device.config.printer
    }

    public enum Outcome: Sendable, Equatable {
        case printed(file: String?)
        case failed(String)
        public var text: String {
            switch self {
            case .printed(let f): return f.map { "printed (\($0))" } ?? "printed"
            case .failed(let why): return "not printed: \(why)"
            }
        }
    }

    public enum DeskError: Error, CustomStringConvertible {
        case noRecord(String), notPrintable(String)
        public var description: String {
            switch self {
            case .noRecord(let r): return "no record \(r) on this device"
            case .notPrintable(let k): return "\(k) records have no receipt"
            }
        }
    }

    /// The receipt of a settlement record.
    public func content(recordID: String, extraLines: [String] = []) throws -> ReceiptContent {
        let store = device.store
        guard let record = try store.record(recordID) else { throw DeskError.noRecord(recordID) }
        let info = try store.receiptInfo(recordID)
        let j = record.json
        let time = Timestamp.date(record.createdAt) ?? Date()
        let holder = info?.holderMasked ?? ""
        let base = (recordID: recordID, institution: device.config.institution, deviceID: device.config.deviceID)
        func int(_ k: String) -> Int64 { (j[k] as? NSNumber)?.int64Value ?? 0 }
        switch record.kind {
        case "medical_subsidy":
            return .subsidy(recordID: base.recordID, institution: base.institution, deviceID: base.deviceID, time: time,
                            cardNumber: j["card_number"] as? String ?? "", holderName: holder, billFen: int("bill_fen"),
                            subsidyFen: int("subsidy_fen"), patientPaysFen: int("patient_pays_fen"), allowanceLeftFen: info?.allowanceLeftFen,
                            extraLines: ["项目 Program: \(j["program"] as? String ?? "")"] + extraLines)
        case "subsidy_reversal":
            let original = try (j["reverses"] as? String).flatMap { try store.record($0) }?.json ?? [:]
            let originalInfo = try (j["reverses"] as? String).flatMap { try store.receiptInfo($0) }
            return .reversal(recordID: base.recordID, institution: base.institution, deviceID: base.deviceID, time: time,
                             cardNumber: original["card_number"] as? String ?? "", holderName: originalInfo?.holderMasked ?? "",
                             reversedRecordID: j["reverses"] as? String ?? "", amountFen: int("amount_fen"), reason: j["reason"] as? String ?? "",
                             extraLines: extraLines)
        case "legal_aid_application":
            let matter = j["matter"] as? String ?? ""
            return .legalAid(recordID: base.recordID, institution: base.institution, deviceID: base.deviceID, time: time,
                             cardNumber: j["card_number"] as? String ?? "", holderName: holder, matterCode: matter,
                             matterName: info?.matterName ?? matter, extraLines: extraLines)
        default:
            throw DeskError.notPrintable(record.kind)
        }
    }

    /// After a subsidy or an application: keeps what the receipts need (masked) and prints
    /// one receipt per record.
    public func issue(records: [StoredRecord], holderName: String, allowanceLeftFen: Int64?, matterName: String?, now: Date) -> [Outcome] {
        records.map { r in
            do {
                try device.store.saveReceiptInfo(ReceiptInfo(recordID: r.recordID, holderMasked: Masking.name(holderName),
                                                             allowanceLeftFen: allowanceLeftFen, matterName: matterName))
            } catch { return .failed("\(error)") }
            return print(recordID: r.recordID, now: now)
        }
    }

    /// Prints a record's receipt; records the outcome; raises `printer_fault` on failure.
    public func print(recordID: String, now: Date, reprint: Bool = false) -> Outcome {
        let store = device.store
        do {
            let content = try content(recordID: recordID, extraLines: reprint ? ["重打凭条 REPRINT \(ReceiptFormat.chinaTime(now))"] : [])
            let rendered = try ReceiptRenderer.render(content, key: device.signingKey, paper: paper)
            let transport = try Printer.parse(spec: printerSpec)
            if let status = try transport.status() { try status.check() }
            var file: String?
            if let filePrinter = transport as? FilePrinter {
                let url = try filePrinter.write(rendered.escpos)
                // A preview beside it: the QR as PNG, the text as it prints.
                let preview = try ReceiptPreview(escpos: rendered.escpos)
                if let png = preview.qrPNG { try png.write(to: url.deletingPathExtension().appendingPathExtension("png")) }
                try Data(preview.text.utf8).write(to: url.deletingPathExtension().appendingPathExtension("txt"))
                file = url.path
            } else {
                try transport.send(rendered.escpos)
            }
            try? store.markPrinted(recordID: recordID, at: now, error: nil)
            return .printed(file: file)
        } catch {
            let why = "\(error)"
            try? store.markPrinted(recordID: recordID, at: now, error: why)
            try? store.recordAlert(device: device.context, code: "printer_fault", cardNumber: nil, detail: "receipt \(recordID): \(why)", now: now)
            return .failed(why)
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
