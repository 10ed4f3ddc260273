import Entitlements
import Foundation
import GRDB

/// The kiosk's SQLite file (GRDB, WAL, `synchronous = FULL`): the installed snapshot, the
/// deduction ledger, the settlement records (durable upload queue and audit trail) and the
/// device sequence. One `DatabasePool`: one writer at a time, readers alongside; every
/// write is one transaction.
public final class KioskStore: @unchecked Sendable {
    public let pool: DatabasePool
    public let path: String

    /// The writer connection's `PRAGMA synchronous` (2 = FULL), for tests.
    public func writerSynchronous() throws -> Int {
        try pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") ?? -1 }
    }

    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")   // durable before "granted" (upload spec §4)
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        config.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // GRDB's WAL set-up puts the writer at synchronous = NORMAL after prepareDatabase;
            // a granted deduction must be fsynced at commit, so the writer goes back to FULL.
            try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
            try KioskStore.migrator.migrate(pool)
        } catch {
            throw StoreError(error)
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
            CREATE TABLE snapshot_meta (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                snapshot_id TEXT NOT NULL, kind TEXT NOT NULL, region TEXT NOT NULL,
                issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, settled_through TEXT NOT NULL,
                id_salt TEXT NOT NULL, authority_key_id TEXT NOT NULL,
                installed_at TEXT NOT NULL, records INTEGER NOT NULL, ignored_records INTEGER NOT NULL);
            CREATE TABLE program (code TEXT PRIMARY KEY, json TEXT NOT NULL);
            CREATE TABLE device (device_id TEXT PRIMARY KEY, public_key TEXT NOT NULL, institution TEXT NOT NULL, status TEXT NOT NULL);
            CREATE TABLE person (id_hash TEXT PRIMARY KEY, status TEXT NOT NULL, status_reason TEXT NOT NULL, programs TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE card (card_number TEXT PRIMARY KEY, id_hash TEXT NOT NULL, status TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE usage (id_hash TEXT NOT NULL, program TEXT NOT NULL, period TEXT NOT NULL, used_fen INTEGER NOT NULL,
                PRIMARY KEY (id_hash, program, period)) WITHOUT ROWID;

            CREATE TABLE device_sequence (device_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);

            CREATE TABLE deduction (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                device_id TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'voided')),
                card_number TEXT NOT NULL, id_hash TEXT NOT NULL, period TEXT NOT NULL,
                card_sequence INTEGER NOT NULL, usage_object BLOB NOT NULL,
                bill_reference TEXT NOT NULL, bill_fen INTEGER NOT NULL CHECK (bill_fen > 0),
                allocations TEXT NOT NULL, snapshot_id TEXT NOT NULL, institution TEXT NOT NULL,
                created_at TEXT NOT NULL, resolved_at TEXT, resolution TEXT);
            CREATE INDEX deduction_state ON deduction(state, card_number);
            CREATE UNIQUE INDEX deduction_bill ON deduction(bill_reference) WHERE state != 'voided';

            CREATE TABLE record (
                device_id TEXT NOT NULL, seq INTEGER NOT NULL,
                record_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL CHECK (kind IN ('medical_subsidy', 'subsidy_reversal', 'legal_aid_application', 'alert')),
                created_at TEXT NOT NULL,
                body TEXT NOT NULL,
                deduction_id INTEGER REFERENCES deduction(id),
                id_hash TEXT, program TEXT, period TEXT,
                amount_fen INTEGER NOT NULL DEFAULT 0,
                reverses TEXT UNIQUE,
                status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'accepted', 'rejected')),
                received_at TEXT, reject_reason TEXT,
                PRIMARY KEY (device_id, seq));
            CREATE INDEX record_usage ON record(id_hash, program, period);
            CREATE INDEX record_status ON record(status, device_id, seq);
            CREATE TRIGGER record_never_edited BEFORE UPDATE OF device_id, seq, record_id, kind, created_at, body, amount_fen ON record
                BEGIN SELECT RAISE(ABORT, 'settlement records are never edited'); END;
            CREATE TRIGGER record_kept_until_acknowledged BEFORE DELETE ON record WHEN OLD.status != 'accepted'
                BEGIN SELECT RAISE(ABORT, 'unacknowledged settlement records are never deleted'); END;
            """)
        }
        return m
    }
}

/// A store failure, with the full-disk case named.
public struct StoreError: Error, CustomStringConvertible {
    public enum Kind: Sendable { case diskFull, readOnly, corrupt, other }
    public var kind: Kind
    public var message: String

    public init(_ error: Error) {
        if let e = error as? StoreError { self = e; return }
        if let db = error as? DatabaseError {
            switch db.resultCode {
            case .SQLITE_FULL: kind = .diskFull; message = "the disk is full: no new subsidies until space is freed (nothing was lost)"
            case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM: kind = .readOnly; message = "the database cannot be written: \(db.message ?? "\(db)")"
            case .SQLITE_CORRUPT, .SQLITE_NOTADB: kind = .corrupt; message = "the database is damaged: \(db.message ?? "\(db)")"
            default: kind = .other; message = "database error: \(db.message ?? "\(db)")"
            }
            return
        }
        kind = .other
        message = "\(error)"
    }

    public var description: String { message }
}

/// RFC 3339 UTC with `Z`, second precision, as every spec writes times.
public enum Timestamp {
    static let formatter: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f
    }()
    static let fractional: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
    public static func string(_ d: Date) -> String { formatter.string(from: d) }
    public static func date(_ s: String) -> Date? { formatter.date(from: s) ?? fractional.date(from: s) }
}
