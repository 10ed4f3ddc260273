import KioskProtocol
import Foundation
import GRDB

/// What a receipt needs beyond its settlement record (holder name masked, allowance left,
/// matter name) and whether it was printed: kept so that a receipt can be printed again and say the same.
public struct ReceiptInfo: Sendable, Equatable {
    /// The settlement record the receipt is for.
    public var recordID: String
    /// The holder's name, masked (receipt spec §2); empty when not known.
    public var holderMasked: String
    /// For a `medical_subsidy` record: its program's allowance left this year after it (the receipt's `l`),
    /// max(0, limit_fen − used_after_fen) when it was made. Nil for other records.
    public var allowanceLeftFen: Int64?
    /// For a legal-aid application: the matter's printed name.
    public var matterName: String?
    /// When it was last printed, RFC 3339 UTC; nil when never printed or the last attempt failed.
    public var printedAt: String?
    /// Why the last print attempt failed, or nil.
    public var printError: String?
    /// A receipt's extra lines as given; printed state nil unless known.
    public init(recordID: String, holderMasked: String, allowanceLeftFen: Int64?, matterName: String?, printedAt: String? = nil, printError: String? = nil) {
        self.recordID = recordID; self.holderMasked = holderMasked; self.allowanceLeftFen = allowanceLeftFen
        self.matterName = matterName; self.printedAt = printedAt; self.printError = printError
    }
}

extension KioskStore {
    /// Keeps what a record's receipt prints beyond the record; the first save for a record
    /// stands (later ones change nothing). The print state is set by `markPrinted`.
    public func saveReceiptInfo(_ info: ReceiptInfo) throws {
        try write { db in
            try db.cachedStatement(sql: """
                INSERT INTO receipt_info (record_id, holder_masked, allowance_left_fen, matter_name) VALUES (?, ?, ?, ?)
                ON CONFLICT(record_id) DO NOTHING
                """).execute(arguments: [info.recordID, info.holderMasked, info.allowanceLeftFen, info.matterName])
        }
    }

    /// Marks a print attempt: printed (error nil) or failed with its reason.
    public func markPrinted(recordID: String, at: Date, error: String?) throws {
        try write { db in
            try db.cachedStatement(sql: "UPDATE receipt_info SET printed_at = ?, print_error = ? WHERE record_id = ?").execute(
                           arguments: [error == nil ? Timestamp.string(at) : nil, error, recordID])
        }
    }

    /// What a record's receipt printed and whether it was printed, or nil when nothing was kept.
    public func receiptInfo(_ recordID: String) throws -> ReceiptInfo? {
        try pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM receipt_info WHERE record_id = ?"), arguments: [recordID]).map {
                ReceiptInfo(recordID: $0["record_id"], holderMasked: $0["holder_masked"], allowanceLeftFen: $0["allowance_left_fen"],
                            matterName: $0["matter_name"], printedAt: $0["printed_at"], printError: $0["print_error"])
            }
        }
    }
}

extension KioskStore {
    /// A program of the installed snapshot, as a receipt prints it (name, limit for the allowance left,
    /// matter names); nil when the snapshot has no such program.
    public func receiptProgram(_ code: String) throws -> Program? {
        try pool.read { db in try KioskStore.program(db, code) }
    }
}
