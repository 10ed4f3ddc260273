import KioskProtocol
import Foundation
import GRDB

/// A legal-aid contact phone kept apart from its record (issue 21 item 6). The record's body,
/// immutable, carries `"contact_phone":"kept-apart"`; the phone itself lives in
/// `legal_aid_contact` and is joined back whenever the whole body is read (to send it, or to
/// show it), byte for byte what the record would have held; 30 days after the hub
/// acknowledged the application the phone is deleted, and the record is left as it is.
public enum ContactKeptApart {
    /// What the record's body holds in place of the phone.
    public static let marker = "kept-apart"
    static let markerJSON = #""contact_phone":"kept-apart""#

    /// The body with the phone in place of the marker, encoded as the record's encoder
    /// encodes a string (the marker is a key and a value no other string can imitate: a quote
    /// inside a JSON string is always escaped).
    static func join(_ body: String, phone: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let encoded = try? encoder.encode(phone) else { return body }
        return body.replacingOccurrences(of: markerJSON, with: #""contact_phone":"# + String(decoding: encoded, as: UTF8.self))
    }
}

/// How long personal data stays on a kiosk (issue 21 item 6; upload spec: the audit trail of
/// acknowledged records is kept 400 days).
public enum Retention {
    /// A legal-aid contact phone, after the hub acknowledged its application.
    public static let contactPhone: TimeInterval = 30 * 86_400
    /// An acknowledged record (and what its receipt printed beyond it).
    public static let acknowledgedRecord: TimeInterval = 400 * 86_400
}

extension KioskStore {
    static func migrateContacts(_ db: Database) throws {
        try db.execute(sql: """
            -- Issue 21 item 6: a legal-aid contact phone, apart from its immutable record.
            CREATE TABLE legal_aid_contact (record_id TEXT PRIMARY KEY REFERENCES record(record_id), phone TEXT NOT NULL);
            """)
    }

    /// What was forgotten by one `forgetExpired`.
    public struct Forgotten: Sendable, Equatable {
        /// Contact phones deleted.
        public var contactPhones = 0
        /// Acknowledged records deleted (with their receipt lines).
        public var records = 0
    }

    /// Deletes what is kept no longer than needed: contact phones 30 days after the hub
    /// took their application (`received_at`, the hub's clock; a refused one 30 days after
    /// it was made), and
    /// acknowledged records 400 days after the hub received them, with their receipt lines.
    /// A record not acknowledged is never deleted (the schema refuses it too).
    @discardableResult
    public func forgetExpired(now: Date) throws -> Forgotten {
        let phones = Timestamp.string(now.addingTimeInterval(-Retention.contactPhone))
        let records = Timestamp.string(now.addingTimeInterval(-Retention.acknowledgedRecord))
        let forgotten = try write { db in
            var f = Forgotten()
            // Accepted: 30 days after the hub received it. Rejected (the hub keeps no
            // received_at for a refusal): 30 days after it was made; a refusal is final.
            try db.execute(sql: """
                DELETE FROM legal_aid_contact WHERE record_id IN (
                    SELECT record_id FROM record WHERE (status = 'accepted' AND received_at IS NOT NULL AND received_at < ?)
                                                    OR (status = 'rejected' AND created_at < ?))
                """, arguments: [phones, phones])
            f.contactPhones = db.changesCount
            // Rejected records stay: they are the operators' to look into, not an audit trail.
            let old = "SELECT record_id FROM record WHERE status = 'accepted' AND received_at IS NOT NULL AND received_at < ?"
            try db.execute(sql: "DELETE FROM receipt_info WHERE record_id IN (\(old))", arguments: [records])
            try db.execute(sql: "DELETE FROM legal_aid_contact WHERE record_id IN (\(old))", arguments: [records])
            try db.execute(sql: "DELETE FROM record WHERE record_id IN (\(old))", arguments: [records])
            f.records = db.changesCount
            return f
        }
        // The WAL still holds the deleted pages' old images until a checkpoint: written back
        // and truncated now (best effort: a reader in progress leaves it to the next one).
        if forgotten.contactPhones > 0 || forgotten.records > 0 {
            _ = try? pool.writeWithoutTransaction { try $0.checkpoint(.truncate) }
        }
        return forgotten
    }
}
