import KioskProtocol
import Foundation
import KioskStore
import Synchronization

/// The one bill the kiosk works on (issue 20), confined to the engine's queue. The patient's
/// identity number is here only as a digest of this process (`PatientIdentity`), never stored.
struct OpenBill {
    var reference: String
    var billFen: Int64
    var patient: [UInt8]?
    var status: BillOutcome.Status
    var code: String?
    var subsidyFen: Int64?
    var patientPaysFen: Int64?
    var records: [String] = []
    /// The pre-settlement on the screen (status `confirming`).
    var confirming: Confirming?

    init(reference: String, billFen: Int64, patient: [UInt8]?, status: BillOutcome.Status) {
        self.reference = reference; self.billFen = billFen; self.patient = patient; self.status = status
    }

    func outcome(now: Date) -> BillOutcome {
        BillOutcome(billReference: reference, status: status, code: code, billFen: billFen, subsidyFen: subsidyFen,
                    patientPaysFen: patientPaysFen, records: records, updatedAt: now)
    }
}

/// A pre-settlement waiting for 确认: the card it was computed for (by its tap), and the
/// figures the patient sees; 确认 writes only these.
struct Confirming {
    var cardNumber: String
    var tap: UInt64
    var allocations: [Allocation]
    /// Numbers the pre-settlements, so the 60 s timer of one never ends a later one.
    var number: UInt64
}

/// A change counter per bill reference, for `GET /api/bills/{ref}?wait=`: a long poll
/// notes the counter, reads the outcome, and waits until the counter moves.
public final class BillChanges: Sendable {
    private let counters = Mutex<[String: UInt64]>([:])

    /// Notes a change of the bill `reference`.
    public func bump(_ reference: String) {
        counters.withLock { c in
            c[reference, default: 0] &+= 1
            // Bounded: a busy kiosk's references are forgotten after a few thousand bills
            // (a forgotten one only ends a long poll early, never late).
            if c.count > 4096 { c = [reference: c[reference] ?? 1] }
        }
    }

    /// The counter of `reference` now.
    public func mark(_ reference: String) -> UInt64 { counters.withLock { $0[reference] ?? 0 } }

    /// Waits until `reference` changed after `mark` or `seconds` passed; true when it changed.
    public func wait(_ reference: String, after mark: UInt64, seconds: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if self.mark(reference) != mark { return true }
            do { try await Task.sleep(for: .milliseconds(50)) } catch { return false }
        }
        return self.mark(reference) != mark
    }
}
