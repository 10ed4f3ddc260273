import Foundation
import HubRules
import KioskProtocol

/// A row of one of the hub's tables, typed, that binds itself: its table's name and columns
/// once, its values in the same order (issue 22: typed rows in place of `[SQLValue]`).
package protocol BoundRow: Sendable {
    /// `table (column, …)`, the head of the INSERT.
    static var insertHead: String { get }
    /// The values, in the order of `insertHead`'s columns.
    var values: [SQLValue] { get }
}

/// A row of `hub_answer`: the first answer given to a `record_id` (upload spec §5 step 2).
package struct AnswerRow: BoundRow {
    package static let insertHead = "hub_answer (record_id, device_id, seq, sha256, status, reason, detail, flags, answered_at, batch_id)"
    var recordID: String
    var deviceID: String
    var seq: Int64
    var sha256: String
    var status: HubAnswer.Status
    var reason: String?
    var detail: String?
    var flags: String
    var answeredAt: String
    var batchID: String

    package var values: [SQLValue] {
        [recordID.sqlValue, deviceID.sqlValue, seq.sqlValue, sha256.sqlValue, status.rawValue.sqlValue, reason.sqlValue,
         detail.sqlValue, flags.sqlValue, answeredAt.sqlValue, batchID.sqlValue]
    }
}

/// A row of `hub_record`: an accepted record's bytes and the columns the checks look up.
package struct RecordRow: BoundRow {
    package static let insertHead = """
        hub_record (record_id, device_id, seq, kind, body, sha256, received_at, batch_id, flags, institution, card_number,
            person_ref, program, period, bill_reference, card_sequence, bill_fen, patient_pays_fen, subsidy_fen, reverses, amount_fen)
        """
    var recordID: String
    var deviceID: String
    var seq: Int64
    var record: SettlementRecord
    var body: String
    var sha256: String
    var receivedAt: String
    var batchID: String
    var flags: String

    package var values: [SQLValue] {
        let s = record.medicalSubsidy, l = record.legalAidApplication, v = record.subsidyReversal
        let columns: [any SQLBindable] = [
            recordID, deviceID, seq, record.kind.rawValue, body, sha256, receivedAt, batchID, flags,
            s?.institution, s?.cardNumber ?? l?.cardNumber ?? record.alert?.cardNumber, s?.personRef ?? l?.personRef,
            s?.program ?? l?.program, s?.period,
            s?.billReference, s?.cardSequence, s?.billFen, s?.patientPaysFen, s?.subsidyFen,
            v?.reverses, v?.amountFen,
        ]
        return columns.map(\.sqlValue)
    }
}

/// A row of `hub_rejection`: a refusal, its body kept once by digest in `hub_rejected_body`.
package struct RejectionRow: BoundRow {
    package static let insertHead = "hub_rejection (record_id, device_id, reason, body, body_sha256, received_at, batch_id)"
    var recordID: String?
    var deviceID: String
    var reason: String
    var bodySHA256: String
    var receivedAt: String
    var batchID: String

    package var values: [SQLValue] {
        // `body` stays empty: the text is in `hub_rejected_body` under `body_sha256`.
        [recordID.sqlValue, deviceID.sqlValue, reason.sqlValue, "".sqlValue, bodySHA256.sqlValue, receivedAt.sqlValue, batchID.sqlValue]
    }
}
