import KioskProtocol
import Foundation

/// Why a settlement record gives no receipt.
public enum RecordReceiptError: Error, Equatable, CustomStringConvertible {
    /// Only `medical_subsidy`, `subsidy_reversal` and `legal_aid_application` records have receipts.
    case notPrintable(kind: String)
    /// The record lacks a field its receipt needs, or has it in the wrong form.
    case malformedRecord(String)
    /// The record's `record_id` is not `<device_id>-<seq>` of this device.
    case otherDevice(recordID: String, deviceID: String)
    /// A reversal's receipt needs the record it reverses (its card number); it is not here.
    case reversedRecordMissing(String)
    /// A subsidy's receipt signs the allowance left (`l`); it is not known (neither kept nor computable).
    case allowanceUnknown(program: String)

    /// The reason as one line.
    public var description: String {
        switch self {
        case .notPrintable(let k): return "\(k) records have no receipt"
        case .malformedRecord(let why): return "the record cannot be read for its receipt: \(why)"
        case .otherDevice(let r, let d): return "record \(r) is not a record of device \(d)"
        case .reversedRecordMissing(let r): return "the reversed record \(r) is not on this device"
        case .allowanceUnknown(let p): return "the allowance left of \(p) is not known (its limit is not in the installed snapshot)"
        }
    }
}

/// The receipt of a settlement record (upload.md §1 → receipt.md §1–2): every signed figure is the record's own.
///
/// - `ms`: `r` the record's `seq`, `b` its `bill_fen` (the whole bill), `s` its `subsidy_fen` (this program's
///   part), `p` its `patient_pays_fen` (of the whole bill, after every program), `l` this program's allowance left
///   after it (`allowanceLeft(record:limitFen:)`, kept at issue time so that a reprint says the same).
/// - `rv`: `v` the `seq` of the record in `reverses` (same device), `s` its `amount_fen`; the card number is the
///   reversed record's.
/// - `la`: `m` its `matter`.
public enum RecordReceipt {
    /// What is left of the program's allowance this year after a `medical_subsidy` record:
    /// max(0, `limitFen` − `used_after_fen`) (snapshot.md: remaining = max(0, limit − used)).
    public static func allowanceLeft(record: SettlementRecord.MedicalSubsidy, limitFen: Int64) -> Int64 {
        max(0, limitFen - record.usedAfterFen)
    }

    /// The `seq` in a `record_id` of `deviceID` (`<device_id>-<seq>`), or nil if it is another device's or not one.
    public static func seq(of recordID: String, deviceID: String) -> Int64? {
        let prefix = deviceID + "-"
        guard recordID.hasPrefix(prefix) else { return nil }
        let digits = recordID.dropFirst(prefix.count)
        guard !digits.isEmpty, digits.count <= 18, digits.first != "0", digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int64(digits)
    }

    /// The receipt of `record`, made by `deviceID`.
    /// - Parameters:
    ///   - institution: printed when the record names none (`medical_subsidy` records carry their own).
    ///   - holderName: the holder's name, whole or already masked (it is printed masked).
    ///   - allowanceLeftFen: for a subsidy, the program's allowance left after it (`l`); required.
    ///   - programName: for a subsidy, the program's printed name (its code when nil).
    ///   - matterName: for a legal-aid application, the matter's printed name (its code when nil).
    ///   - reversed: for a reversal, the record it reverses.
    /// - Throws: `RecordReceiptError`.
    public static func content(record: SettlementRecord, deviceID: String, institution: String, holderName: String,
                               allowanceLeftFen: Int64? = nil, programName: String? = nil, matterName: String? = nil,
                               reversed: SettlementRecord? = nil, extraLines: [String] = []) throws -> ReceiptContent {
        let seq = record.seq
        guard self.seq(of: record.recordID, deviceID: deviceID) == seq else {
            throw RecordReceiptError.otherDevice(recordID: record.recordID, deviceID: deviceID)
        }
        let time = try date(record.createdAt)
        switch record.content {
        case .medicalSubsidy(let m):
            guard let left = allowanceLeftFen else { throw RecordReceiptError.allowanceUnknown(program: m.program) }
            return .subsidy(seq: seq, institution: m.institution, deviceID: deviceID, time: time,
                            cardNumber: m.cardNumber, holderName: holderName,
                            billFen: m.billFen, subsidyFen: m.subsidyFen, patientPaysFen: m.patientPaysFen, allowanceLeftFen: left,
                            program: programName ?? m.program, extraLines: extraLines)
        case .subsidyReversal(let r):
            guard let v = self.seq(of: r.reverses, deviceID: deviceID) else {
                throw RecordReceiptError.malformedRecord("reverses \(r.reverses) is not a record of device \(deviceID)")
            }
            guard let reversed else { throw RecordReceiptError.reversedRecordMissing(r.reverses) }
            guard reversed.recordID == r.reverses, let original = reversed.medicalSubsidy else {
                throw RecordReceiptError.malformedRecord("the reversed record given is not the medical subsidy \(r.reverses)")
            }
            return .reversal(seq: seq, institution: original.institution, deviceID: deviceID, time: time,
                             cardNumber: original.cardNumber, holderName: holderName, reversedSeq: v,
                             amountFen: r.amountFen, reason: r.reason, extraLines: extraLines)
        case .legalAidApplication(let l):
            return .legalAid(seq: seq, institution: institution, deviceID: deviceID, time: time, cardNumber: l.cardNumber,
                             holderName: holderName, matterCode: l.matter, matterName: matterName ?? l.matter, extraLines: extraLines)
        case .alert:
            throw RecordReceiptError.notPrintable(kind: record.kind.rawValue)
        }
    }

    /// `created_at`: the specs' `YYYY-MM-DDTHH:MM:SSZ` (`Timestamp`).
    static func date(_ text: String) throws -> Date {
        guard let d = Timestamp.date(text) else { throw RecordReceiptError.malformedRecord("created_at \(text) is not an RFC 3339 time") }
        return d
    }
}

extension SettlementRecord {
    /// A record body read for its receipt: a body that is not a whole record is `malformedRecord`.
    public static func forReceipt(json: String) throws -> SettlementRecord {
        do { return try SettlementRecord(json: json) } catch {
            throw RecordReceiptError.malformedRecord("the body is not a settlement record (\(error))")
        }
    }
}
