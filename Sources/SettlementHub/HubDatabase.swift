import Crypto
import Foundation
import GRDB

/// One record as the hub holds it: its exact JSON, the SHA-256 of those bytes, and when it
/// was first received.
public struct HubRecord: Sendable, Equatable {
    public var recordID: String
    public var deviceID: String
    public var seq: Int64
    public var kind: String
    public var body: String
    public var sha256: String
    public var receivedAt: String
    public var batchID: String

    init(_ r: Row) {
        recordID = r["record_id"]; deviceID = r["device_id"]; seq = r["seq"]; kind = r["kind"]; body = r["body"]
        sha256 = r["sha256"]; receivedAt = r["received_at"]; batchID = r["batch_id"]
    }
}

/// A record the hub refused, kept for the audit (and for tests).
public struct HubRejection: Sendable, Equatable {
    public var recordID: String?
    public var deviceID: String
    public var reason: String
    public var body: String
    public var receivedAt: String
}

/// The hub's SQLite file (GRDB, WAL, `synchronous = FULL`): records keyed by `record_id`,
/// never edited; one write transaction per batch.
public final class HubDatabase: Sendable {
    public let pool: DatabasePool

    public init(path: String) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        config.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: config)
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
            CREATE TABLE hub_record (
                record_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
                body TEXT NOT NULL, sha256 TEXT NOT NULL, received_at TEXT NOT NULL, batch_id TEXT NOT NULL);
            CREATE INDEX hub_record_device ON hub_record(device_id, seq);
            CREATE TRIGGER hub_record_never_edited BEFORE UPDATE ON hub_record
                BEGIN SELECT RAISE(ABORT, 'settlement records are never edited'); END;
            CREATE TRIGGER hub_record_never_deleted BEFORE DELETE ON hub_record
                BEGIN SELECT RAISE(ABORT, 'settlement records are never deleted'); END;
            CREATE TABLE hub_rejection (
                id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT, device_id TEXT NOT NULL, reason TEXT NOT NULL,
                body TEXT NOT NULL, received_at TEXT NOT NULL, batch_id TEXT NOT NULL);
            CREATE TABLE hub_batch (
                id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT NOT NULL, device_id TEXT NOT NULL, sent_at TEXT NOT NULL,
                received_at TEXT NOT NULL, records INTEGER NOT NULL, accepted INTEGER NOT NULL, duplicates INTEGER NOT NULL,
                rejected INTEGER NOT NULL);
            """)
        }
        try m.migrate(pool)
    }

    public func record(_ recordID: String) throws -> HubRecord? {
        try pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM hub_record WHERE record_id = ?", arguments: [recordID]).map(HubRecord.init) }
    }

    public func records(deviceID: String? = nil) throws -> [HubRecord] {
        try pool.read { db in
            if let deviceID {
                return try Row.fetchAll(db, sql: "SELECT * FROM hub_record WHERE device_id = ? ORDER BY seq", arguments: [deviceID]).map(HubRecord.init)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM hub_record ORDER BY device_id, seq").map(HubRecord.init)
        }
    }

    public func recordCount(deviceID: String? = nil) throws -> Int {
        try pool.read { db in
            if let deviceID {
                return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM hub_record WHERE device_id = ?", arguments: [deviceID]) ?? 0
            }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM hub_record") ?? 0
        }
    }

    public func rejections() throws -> [HubRejection] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM hub_rejection ORDER BY id").map {
                HubRejection(recordID: $0["record_id"], deviceID: $0["device_id"], reason: $0["reason"], body: $0["body"], receivedAt: $0["received_at"])
            }
        }
    }

    /// Batches received (whatever their answer): for tests and the operator.
    public func batchCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM hub_batch") ?? 0 }
    }

    /// Stores a checked batch in one transaction: each record accepted (new), duplicate
    /// (same bytes as before: the original `received_at`), or rejected (`conflict` for the
    /// same id with other bytes, or the reason `check` gives).
    func store(batchID: String, deviceID: String, sentAt: String, records: [[UInt8]], receivedAt: String) async throws -> [RecordResult] {
        // Checked before the transaction (JSON work outside the writer's lock).
        let checks = records.map { RecordRules.check($0, deviceID: deviceID) }
        return try await pool.write { db in
            let find = try db.cachedStatement(sql: "SELECT sha256, received_at FROM hub_record WHERE record_id = ?")
            let insert = try db.cachedStatement(sql: """
                INSERT INTO hub_record (record_id, device_id, seq, kind, body, sha256, received_at, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let reject = try db.cachedStatement(sql: """
                INSERT INTO hub_rejection (record_id, device_id, reason, body, received_at, batch_id) VALUES (?, ?, ?, ?, ?, ?)
                """)
            var results: [RecordResult] = []
            results.reserveCapacity(records.count)
            var counts = (accepted: 0, duplicates: 0, rejected: 0)
            for (bytes, check) in zip(records, checks) {
                let text = String(decoding: bytes, as: UTF8.self)
                switch check {
                case .invalid(let recordID, let reason, let detail):
                    try reject.execute(arguments: [recordID, deviceID, reason, text, receivedAt, batchID])
                    results.append(RecordResult(recordID: recordID, status: .rejected(reason: reason, detail: detail)))
                    counts.rejected += 1
                case .valid(let r):
                    let hash = hexDigest(SHA256.hash(data: bytes))
                    if let existing = try Row.fetchOne(find, arguments: [r.recordID]) {
                        if existing["sha256"] as String == hash {
                            results.append(RecordResult(recordID: r.recordID, status: .duplicate(receivedAt: existing["received_at"])))
                            counts.duplicates += 1
                        } else {
                            try reject.execute(arguments: [r.recordID, deviceID, "conflict", text, receivedAt, batchID])
                            results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: "conflict", detail: "record_id seen before with different content")))
                            counts.rejected += 1
                        }
                    } else {
                        try insert.execute(arguments: [r.recordID, deviceID, r.seq, r.kind, text, hash, receivedAt, batchID])
                        results.append(RecordResult(recordID: r.recordID, status: .accepted(receivedAt: receivedAt)))
                        counts.accepted += 1
                    }
                }
            }
            try db.execute(sql: """
                INSERT INTO hub_batch (batch_id, device_id, sent_at, received_at, records, accepted, duplicates, rejected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [batchID, deviceID, sentAt, receivedAt, records.count, counts.accepted, counts.duplicates, counts.rejected])
            return results
        }
    }
}

/// What the hub answers for one record.
struct RecordResult: Sendable, Equatable {
    enum Status: Sendable, Equatable {
        case accepted(receivedAt: String)
        case duplicate(receivedAt: String)
        case rejected(reason: String, detail: String?)
    }
    var recordID: String?
    var status: Status
}

/// Lower-case hex of a digest.
func hexDigest<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(64)
    for byte in digest {
        out.append(hex[Int(byte >> 4)])
        out.append(hex[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
