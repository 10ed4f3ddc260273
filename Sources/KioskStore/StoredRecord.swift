import KioskProtocol
import Foundation
import GRDB

/// A stored record's upload state (upload spec §4): waiting, or answered for good.
public enum RecordStatus: String, Sendable, Codable, CaseIterable {
    /// Waiting to be uploaded (or re-sent).
    case queued
    /// The hub stored it (`accepted`, or `duplicate` of the same bytes).
    case accepted
    /// The hub refused it for good (`reject_reason` says why).
    case rejected
}

/// One settlement record as stored: its immutable body and its upload state.
public struct StoredRecord: Sendable, Equatable {
    /// The device's gapless sequence number (upload spec §1).
    public var seq: Int64
    /// `<device_id>-<seq>`.
    public var recordID: String
    /// The record's kind.
    public var kind: RecordKind
    /// When the record was made, RFC 3339 UTC with `Z`.
    public var createdAt: String
    /// The record's JSON text, byte for byte as uploaded (a legal-aid contact phone joined back while it is kept).
    public var body: String
    /// The upload state.
    public var status: RecordStatus
    /// The hub's `received_at` (UTC seconds), once accepted.
    public var receivedAt: String?
    /// The hub's reason, once rejected.
    public var rejectReason: String?
    /// What the record adds to L, in fen: a subsidy's amount, a reversal's negated, 0 otherwise.
    public var amountFen: Fen
    /// The program the record concerns; nil for alerts.
    public var program: String?
    /// The deduction a subsidy record was made by (the records of one bill share it).
    public var deductionID: Int64?

    /// Records with their legal-aid contact phone joined back (issue 21 item 6): select the
    /// rows through this to read or send a record's whole body.
    static let select = "SELECT record.*, legal_aid_contact.phone AS contact_phone FROM record LEFT JOIN legal_aid_contact USING (record_id)"

    init(seq: Int64, recordID: String, kind: RecordKind, createdAt: String, body: String, status: RecordStatus,
         receivedAt: String?, rejectReason: String?, amountFen: Fen, program: String?, deductionID: Int64?) {
        self.seq = seq; self.recordID = recordID; self.kind = kind; self.createdAt = createdAt; self.body = body; self.status = status
        self.receivedAt = receivedAt; self.rejectReason = rejectReason; self.amountFen = amountFen; self.program = program; self.deductionID = deductionID
    }

    init(_ r: StoreRow) throws {
        let kindText: String = try r["kind"]
        let id: String = try r["record_id"]
        guard let kind = RecordKind(rawValue: kindText) else {
            throw StoreError(kind: .corrupt, message: "record \(id): unknown kind \(kindText)")
        }
        seq = try r["seq"]; recordID = id; self.kind = kind; createdAt = try r["created_at"]; body = try r["body"]
        if let phone: String = try r["contact_phone"] { body = ContactKeptApart.join(body, phone: phone) }
        let statusText: String = try r["status"]
        guard let status = RecordStatus(rawValue: statusText) else {
            throw StoreError(kind: .corrupt, message: "record \(id): unknown status \(statusText)")
        }
        self.status = status; receivedAt = try r["received_at"]; rejectReason = try r["reject_reason"]
        amountFen = try r["amount_fen"]; program = try r["program"]; deductionID = try r["deduction_id"]
    }

    /// The record itself, read from its body (a body that cannot be read throws: nothing is
    /// taken for empty).
    public func record() throws -> SettlementRecord {
        do { return try SettlementRecord(json: body) } catch {
            throw StoreError(kind: .corrupt, message: "record \(recordID): its body cannot be read: \(error)")
        }
    }
}
