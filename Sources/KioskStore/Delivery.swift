import KioskProtocol
import Foundation
import GRDB

// Delivery of settlement records to the hub (upload spec §2–3): the batch read and the
// batch of answers written back, each in one transaction. Records are never deleted or
// edited here; only `status`, `received_at` and `reject_reason` change, and only from
// `queued`.

/// The hub's verdict on one record, as the store applies it.
public struct DeliveryResult: Sendable, Equatable {
    /// Upload spec §3: accepted (with its `received_at`) or rejected (with its reason).
    public enum Outcome: Sendable, Equatable {
        /// `accepted` or `duplicate`: the hub holds the record since `receivedAt` (RFC 3339).
        case accepted(receivedAt: String)
        /// The hub will never take the record.
        case rejected(reason: String)
    }

    /// The record the verdict is for.
    public var recordID: String
    /// The verdict.
    public var outcome: Outcome

    /// A verdict on one record.
    public init(recordID: String, outcome: Outcome) {
        self.recordID = recordID
        self.outcome = outcome
    }
}

/// What `applyResults` changed: records already resolved (by another uploader) are left alone.
public struct DeliveryApplied: Sendable, Equatable {
    /// Records newly marked accepted.
    public var accepted = 0
    /// Records newly marked rejected.
    public var rejected = 0
    /// Results for records that were not queued any more (or not on this store).
    public var unchanged = 0
    /// Nothing changed yet.
    public init() {}
}

/// A hub answer the store refuses to apply (upload spec §3).
public enum DeliveryError: Error, Equatable, CustomStringConvertible {
    /// A `received_at` that is not RFC 3339: the whole answer is refused, nothing written.
    case badReceivedAt(recordID: String, value: String)

    /// The refusal in one line.
    public var description: String {
        switch self {
        case .badReceivedAt(let id, let v): return "received_at \"\(v)\" for \(id) is not an RFC 3339 time"
        }
    }
}

extension KioskStore {
    /// Upload spec §2: at most 500 records per batch.
    public static let maxBatchRecords = 500
    /// Upload spec §2: at most 1 MiB per batch body.
    public static let maxBatchBytes = 1 << 20
    /// Room left for the batch envelope (`batch_id`, `device_id`, `sent_at`) by the default byte budget.
    public static let batchEnvelopeAllowance = 1024

    /// The next queued records of `deviceID`, in `seq` order: at most `maxRecords`, and their
    /// bodies joined with commas (the batch's `records` array without its brackets) at most
    /// `maxBytes` long. The first record is returned even if it alone is longer, so that an
    /// oversized record is tried (and refused by the hub with 413) instead of silently stuck.
    public func nextBatch(deviceID: String, maxRecords: Int = KioskStore.maxBatchRecords,
                          maxBytes: Int = KioskStore.maxBatchBytes - KioskStore.batchEnvelopeAllowance) throws -> [StoredRecord] {
        precondition(maxRecords > 0 && maxBytes > 0, "a batch holds at least one record")
        return try pool.read { db in
            var out: [StoredRecord] = []
            out.reserveCapacity(min(maxRecords, 512))
            var bytes = 0
            try KioskStore.each(db, "\(StoredRecord.select) WHERE status = 'queued' AND device_id = ? ORDER BY seq LIMIT ?", [deviceID, maxRecords]) { row in
                let record = try StoredRecord(row)
                let added = record.body.utf8.count + (out.isEmpty ? 0 : 1)
                if !out.isEmpty && bytes + added > maxBytes { return false }
                bytes += added
                out.append(record)
                return true
            }
            return out
        }
    }

    /// The number of queued records (of `deviceID`, or of every device).
    public func queuedCount(deviceID: String? = nil) throws -> Int {
        try pool.read { db in
            if let deviceID {
                return try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM record WHERE status = 'queued' AND device_id = ?"), arguments: [deviceID]) ?? 0
            }
            return try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM record WHERE status = 'queued'")) ?? 0
        }
    }

    /// Whether a queued `alert` record with this `code` is waiting for upload (so that an alert
    /// raised "once per streak" is not raised again by a restarted uploader).
    public func queuedAlertExists(deviceID: String, code: String) throws -> Bool {
        try pool.read { db in
            try Bool.fetchOne(db.cachedStatement(sql: """
                SELECT EXISTS (SELECT 1 FROM record WHERE status = 'queued' AND device_id = ? AND kind = 'alert'
                               AND json_extract(body, '$.code') = ?)
                """), arguments: [deviceID, code]) ?? false
        }
    }

    /// The hub's answers for many records, in ONE transaction: accepted records get their
    /// `received_at` (normalised by `ReceivedAt.normalise`, fractions rounded up), rejected
    /// ones their reason. Only queued records change. Every `received_at` is checked before
    /// anything is written: one bad time refuses the whole answer.
    @discardableResult
    public func applyResults(_ results: [DeliveryResult]) throws -> DeliveryApplied {
        var normalised: [String?] = []
        normalised.reserveCapacity(results.count)
        for r in results {
            switch r.outcome {
            case .accepted(let receivedAt):
                guard let n = ReceivedAt.normalise(receivedAt) else { throw DeliveryError.badReceivedAt(recordID: r.recordID, value: receivedAt) }
                normalised.append(n)
            case .rejected:
                normalised.append(nil)
            }
        }
        if results.isEmpty { return DeliveryApplied() }
        return try write { db in
            var applied = DeliveryApplied()
            let accept = try db.cachedStatement(sql: """
                UPDATE record SET status = 'accepted', received_at = ?, reject_reason = NULL WHERE record_id = ? AND status = 'queued'
                """)
            let reject = try db.cachedStatement(sql: """
                UPDATE record SET status = 'rejected', received_at = NULL, reject_reason = ? WHERE record_id = ? AND status = 'queued'
                """)
            for (r, receivedAt) in zip(results, normalised) {
                switch r.outcome {
                case .accepted:
                    try accept.execute(arguments: [receivedAt, r.recordID])
                    if db.changesCount == 1 { applied.accepted += 1 } else { applied.unchanged += 1 }
                case .rejected(let reason):
                    try reject.execute(arguments: [reason, r.recordID])
                    if db.changesCount == 1 { applied.rejected += 1 } else { applied.unchanged += 1 }
                }
            }
            return applied
        }
    }
}
