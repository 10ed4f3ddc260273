import BenefitCard
import KioskProtocol
import Foundation
import KioskStore
import SmartCard

/// Exit statuses of the command line, the same for every command (README).
public enum KioskExit: Int32, Sendable {
    /// Granted, eligible or applied.
    case ok = 0
    /// The card is not authentic.
    case notAuthentic = 2
    /// The card is unreadable, or not a benefit card.
    case unreadable = 3
    /// No card, or the card was removed (a reader gone too).
    case noCard = 4
    /// pcscd is not running.
    case serviceUnavailable = 5
    /// Not provisioned, or no snapshot installed.
    case notReady = 6
    /// The store failed (a full disk among others), or an unexpected error.
    case storage = 7
    /// Refused by the ledger, a snapshot install or a reversal.
    case refused = 8
    /// A decision other than granted/eligible (limit_exhausted, person_suspended, …).
    case declined = 10
    /// Bad usage (a bill that cannot be charged as given among others).
    case usage = 64
}

/// What happened, as every surface says it (issue 8: one mapping, used by kioskd and
/// kioskctl alike): the decision or operating code, the screen's words (Chinese first),
/// the detail for the technician, the HTTP status and the exit status.
public struct OutcomeReport: Sendable, Equatable, CustomStringConvertible {
    /// A decision code of snapshot spec §6, or an operating code (`store_error`,
    /// `disk_full`, `pcscd_unavailable`, `bill_already_subsidised`, …).
    public var code: String
    /// What the screen says (`Guidance.text`: the screen's, the voice's and kioskctl's words).
    public var message: String
    /// For logs and `kioskctl`, never for a patient's screen.
    public var detail: String
    /// The HTTP status `kioskd` answers with.
    public var httpStatus: Int
    /// The exit status `kioskctl` ends with.
    public var exit: KioskExit

    /// A report as given.
    public init(code: String, message: String, detail: String, httpStatus: Int, exit: KioskExit) {
        self.code = code; self.message = message; self.detail = detail; self.httpStatus = httpStatus; self.exit = exit
    }

    /// `code: message (detail)`.
    public var description: String { "\(code): \(message)" + (detail.isEmpty ? "" : " (\(detail))") }
}

/// The one mapping from a decision or an error to its `OutcomeReport` (snapshot spec §6).
public enum Outcomes {
    /// A decision (snapshot spec §6) as every surface reports it.
    public static func report(_ code: ReasonCode, detail: String = "") -> OutcomeReport {
        let exit: KioskExit
        switch code {
        case .granted, .eligible: exit = .ok
        case .cardNotAuthentic: exit = .notAuthentic
        case .cardUnreadable: exit = .unreadable
        case .cardRemoved: exit = .noCard
        case .snapshotMissing: exit = .notReady
        default: exit = .declined
        }
        return OutcomeReport(code: code.rawValue, message: Guidance.text(code: code.rawValue), detail: detail, httpStatus: 200, exit: exit)
    }

    /// Any error a card session, the store or the ledger can throw, mapped once. Unknown
    /// errors are `internal_error`: never dressed up as a card problem.
    public static func report(_ error: Error) -> OutcomeReport {
        switch error {
        case let r as CardRefusal:
            return report(r.code, detail: r.detail)
        case let e as CardError:
            switch e {
            case .cardRemoved: return report(.cardRemoved, detail: e.description)
            case .writeRefused: return report(.cardWriteRefused, detail: e.description)
            case .unreadable, .notABenefitCard, .transport: return report(.cardUnreadable, detail: e.description)
            case .serviceUnavailable:
                return OutcomeReport(code: "pcscd_unavailable", message: Guidance.text(code: "pcscd_unavailable"),
                                     detail: e.description, httpStatus: 503, exit: .serviceUnavailable)
            case .readerGone:
                return OutcomeReport(code: "reader_gone", message: Guidance.text(code: "reader_gone"),
                                     detail: e.description, httpStatus: 503, exit: .noCard)
            default:
                return OutcomeReport(code: "card_error", message: Guidance.text(code: "card_error"),
                                     detail: e.description, httpStatus: 503, exit: .noCard)
            }
        case let e as PCSCError:
            return report(CardError(e))
        case let e as StoreError:
            if e.kind == .diskFull {
                return OutcomeReport(code: "disk_full", message: Guidance.text(code: "disk_full"),
                                     detail: e.description, httpStatus: 507, exit: .storage)
            }
            return OutcomeReport(code: "store_error", message: Guidance.text(code: "store_error"),
                                 detail: e.description, httpStatus: 503, exit: .storage)
        case let e as LedgerError:
            switch e {
            case .noSnapshot: return report(.snapshotMissing, detail: e.description)
            case .duplicateBill:
                return OutcomeReport(code: "bill_already_subsidised", message: Guidance.text(code: "bill_already_subsidised"),
                                     detail: e.description, httpStatus: 409, exit: .refused)
            case .pendingExists:
                return OutcomeReport(code: "card_pending", message: Guidance.text(code: "card_pending"),
                                     detail: e.description, httpStatus: 409, exit: .refused)
            case .staleDecision:
                return OutcomeReport(code: "decision_stale", message: Guidance.text(code: "decision_stale"),
                                     detail: e.description, httpStatus: 409, exit: .refused)
            default:
                return OutcomeReport(code: "ledger_refused", message: Guidance.text(code: "ledger_refused"),
                                     detail: e.description, httpStatus: 409, exit: .refused)
            }
        case let e as BillError:
            return OutcomeReport(code: "bad_bill", message: Guidance.text(code: "bad_bill"),
                                 detail: e.description, httpStatus: 400, exit: .usage)
        case let e as DeviceError:
            return OutcomeReport(code: "not_provisioned", message: Guidance.text(code: "not_provisioned"),
                                 detail: e.description, httpStatus: 503, exit: .notReady)
        default:
            return OutcomeReport(code: "internal_error", message: Guidance.text(code: "internal_error"),
                                 detail: "\(error)", httpStatus: 500, exit: .storage)
        }
    }
}

/// A bill that cannot be charged as given (issue 8: validated once, in `Kiosk.charge`).
public enum BillError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `bill_fen` outside 1…99,999,999.
    case amount(Int64)
    /// A `bill_reference` that is empty, over 64 bytes or not printable ASCII, with why.
    case reference(String)

    /// The refusal in one line.
    public var description: String {
        switch self {
        case .amount(let f): return "bill_fen \(f) is not 1 to \(Kiosk.maximumBillFen) fen"
        case .reference(let why): return "bill_reference \(why)"
        }
    }

    /// The most a bill reference may be, in bytes.
    public static let maximumReferenceBytes = 64

    /// 1 to 99,999,999 fen; a reference of 1–64 bytes of printable ASCII (no spaces at
    /// either end, no control characters): it goes into records, receipts and screens.
    public static func check(billFen: Int64, billReference: String) throws {
        guard billFen > 0, billFen <= Kiosk.maximumBillFen else { throw BillError.amount(billFen) }
        let bytes = billReference.utf8
        guard !bytes.isEmpty, bytes.count <= maximumReferenceBytes else {
            throw BillError.reference("must be 1 to \(maximumReferenceBytes) bytes")
        }
        guard bytes.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
            throw BillError.reference("may hold only printable ASCII without spaces (A–Z, 0–9, - and the like)")
        }
    }
}

/// The hospital system's bill as the bill API takes it (`POST /api/bills`): a JSON object of
/// at most 1 KiB with exactly `bill_reference` (see `BillError.check`) and `bill_fen` (an
/// integer written without fraction or exponent: `1.0` and `1e3` are not fen).
public struct BillRequest: Sendable, Equatable {
    /// The hospital system's reference of the bill.
    public var billReference: String
    /// The bill, in fen.
    public var billFen: Int64
    /// The patient named by `patient_id_number` (issue 20), as a digest of this process
    /// (`PatientIdentity`): the number itself is dropped as soon as it is parsed.
    public var patient: [UInt8]?

    /// The largest body taken, in bytes.
    public static let maximumBodyBytes = 1024

    /// Why a body is not a bill: too large, not a JSON object, wrong fields, or a bill `BillError` refuses.
    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        /// The body's size in bytes, over 1 KiB.
        case tooLarge(Int)
        /// Not a JSON object.
        case notAJSONObject
        /// An unknown field, or a field of the wrong type or form, with why.
        case fields(String)
        /// The bill itself refused.
        case bill(BillError)
        /// The refusal in one line (a patient's identity number never appears in it).
        public var description: String {
            switch self {
            case .tooLarge(let n): return "the body is \(n) bytes; at most \(BillRequest.maximumBodyBytes)"
            case .notAJSONObject: return "the body is not a JSON object"
            case .fields(let why): return why
            case .bill(let e): return e.description
            }
        }
    }

    /// A bill as given; `patient` is a `PatientIdentity` digest.
    public init(billReference: String, billFen: Int64, patient: [UInt8]? = nil) {
        self.billReference = billReference; self.billFen = billFen; self.patient = patient
    }

    /// The reference `DELETE /api/bills/current` names the open bill by: no bill may take it.
    public static let reservedReference = "current"

    /// The body of `POST /api/bills` as sent, decoded strictly (`StrictDecoder`).
    struct Body: Decodable {
        static let keys: Set<String> = ["bill_reference", "bill_fen", "patient_id_number"]
        enum CodingKeys: String, CodingKey { case billReference = "bill_reference", billFen = "bill_fen", patientIDNumber = "patient_id_number" }
        var billReference: String
        var billFen: Int64
        var patientIDNumber: String?

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            billReference = try c.decode(String.self, forKey: .billReference)
            do { billFen = try c.decode(Int64.self, forKey: .billFen) } catch {
                throw StrictDecoder.Failure("bill_fen must be an integer number of fen (not 1.0, 1e3, a string or a boolean)")
            }
            // Present means a string: null is not "no patient".
            patientIDNumber = c.contains(.patientIDNumber) ? try c.decode(String.self, forKey: .patientIDNumber) : nil
        }
    }

    /// Reads a `POST /api/bills` body: at most 1 KiB, exactly the known fields, `bill_fen` an
    /// integer, the bill checked by `BillError.check`, `patient_id_number` (if any) turned into
    /// its digest.
    /// - Throws: `ParseError`.
    public static func parse(_ body: [UInt8]) throws(ParseError) -> BillRequest {
        guard body.count <= maximumBodyBytes else { throw .tooLarge(body.count) }
        let b: Body
        do { b = try StrictDecoder.decode(Body.self, from: body, keys: Body.keys) } catch {
            throw (try? StrictJSON.objectMembers(body)) == nil ? .notAJSONObject : .fields(error.description)
        }
        do { try BillError.check(billFen: b.billFen, billReference: b.billReference) } catch let e as BillError { throw .bill(e) } catch { throw .notAJSONObject }
        guard b.billReference != reservedReference else { throw .fields("bill_reference \"current\" is reserved (DELETE /api/bills/current names the waiting bill)") }
        var patient: [UInt8]?
        if let id = b.patientIDNumber {
            // Never echoed back in the error: it is a person's identity number.
            guard let digest = PatientIdentity.digest(id) else {
                throw .fields("patient_id_number must be 18 characters with a valid GB 11643 check character")
            }
            patient = digest
        }
        return BillRequest(billReference: b.billReference, billFen: b.billFen, patient: patient)
    }
}
