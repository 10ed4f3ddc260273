import KioskProtocol
import Foundation
import GRDB

/// The kiosk's SQLite file (GRDB, WAL, `synchronous = FULL`): the installed snapshot, the
/// deduction ledger, the settlement records (durable upload queue and audit trail) and the
/// device sequence. One `DatabasePool`: one writer at a time, readers alongside; every
/// write is one transaction.
public final class KioskStore: Sendable {
    /// The store's connections: one writer, readers alongside (WAL).
    public let pool: DatabasePool
    /// The SQLite file's path.
    public let path: String
    /// The file as it was opened: replaced, removed or overwritten under the daemon, it says so
    /// (`fileProblem()`, issue 23 item 5).
    public let file: StoreFile
    /// The WAL's size after each commit, and SQLite's automatic checkpoint (`WalCheckpoint.swift`).
    let walWatch: WalWatch

    /// What is wrong with the store's file now (gone, replaced, overwritten), without scanning
    /// it; nil when it is the file opened and still a SQLite database.
    public func fileProblem() -> String? { file.problem() }

    /// The writer connection's `PRAGMA synchronous` (2 = FULL), for tests.
    public func writerSynchronous() throws -> Int {
        try pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// Opens (or creates) the store at `path`, with `synchronous = FULL`, foreign keys and
    /// `secure_delete` on, and migrates it to contract version 2's schema.
    /// - Throws: `StoreError` (a store made under contract version 1 is refused).
    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        // Retained for good (never released): the connections' WAL hook points at it.
        let watch = WalWatch()
        _ = Unmanaged.passRetained(watch)
        walWatch = watch
        config.prepareDatabase { db in
            WalWatch.install(db, Unmanaged.passUnretained(watch).toOpaque())
            try db.execute(sql: "PRAGMA synchronous = FULL")   // durable before "granted" (upload spec §4)
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            // Issue 21 item 6: what is deleted (a contact phone, a record past 400 days) is
            // overwritten on disk, not left in a free page.
            try db.execute(sql: "PRAGMA secure_delete = ON")
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
        file = try StoreFile(path: path)
    }

    /// Contract version 2's schema. A store made under version 1 (retired: persons keyed by
    /// a hash of the identity number) is refused, not converted: re-provision the device.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("contract-v2") { db in
            if try db.tableExists("snapshot_meta") {
                throw StoreError(kind: .other, message: "this store was made by contract version 1 (retired); move it aside and provision the device again")
            }
            try db.execute(sql: """
            CREATE TABLE snapshot_meta (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                snapshot_id TEXT NOT NULL, kind TEXT NOT NULL, region TEXT NOT NULL,
                issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, settled_through TEXT NOT NULL,
                authority_key_id TEXT NOT NULL,
                installed_at TEXT NOT NULL, records INTEGER NOT NULL, ignored_records INTEGER NOT NULL);
            CREATE TABLE program (code TEXT PRIMARY KEY, json TEXT NOT NULL);
            CREATE TABLE device (device_id TEXT PRIMARY KEY, public_key TEXT NOT NULL, institution TEXT NOT NULL, status TEXT NOT NULL);
            CREATE TABLE person (person_ref TEXT PRIMARY KEY, status TEXT NOT NULL, status_reason TEXT NOT NULL, programs TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE card (card_number TEXT PRIMARY KEY, person_ref TEXT NOT NULL, status TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE usage (person_ref TEXT NOT NULL, program TEXT NOT NULL, period TEXT NOT NULL, used_fen INTEGER NOT NULL,
                PRIMARY KEY (person_ref, program, period)) WITHOUT ROWID;

            CREATE TABLE device_sequence (device_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);

            -- Sync spec §6: the latest instant the kiosk has good reason to believe has passed.
            CREATE TABLE clock_floor (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                floor TEXT NOT NULL, reset_at TEXT, reset_by TEXT, reset_reason TEXT,
                suspect_since TEXT);

            CREATE TABLE deduction (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                device_id TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'voided')),
                card_number TEXT NOT NULL, person_ref TEXT NOT NULL, period TEXT NOT NULL,
                card_sequence INTEGER NOT NULL, usage_object BLOB NOT NULL,
                card_challenge BLOB NOT NULL CHECK (length(card_challenge) = 16), card_ack BLOB,
                bill_reference TEXT NOT NULL, bill_fen INTEGER NOT NULL CHECK (bill_fen > 0),
                allocations TEXT NOT NULL, snapshot_id TEXT NOT NULL, institution TEXT NOT NULL,
                created_at TEXT NOT NULL, resolved_at TEXT, resolution TEXT,
                CHECK (card_ack IS NULL OR length(card_ack) = 64));
            CREATE INDEX deduction_state ON deduction(state, card_number);
            CREATE UNIQUE INDEX deduction_bill ON deduction(bill_reference) WHERE state != 'voided';

            CREATE TABLE record (
                device_id TEXT NOT NULL, seq INTEGER NOT NULL,
                record_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL CHECK (kind IN ('medical_subsidy', 'subsidy_reversal', 'legal_aid_application', 'alert')),
                created_at TEXT NOT NULL,
                body TEXT NOT NULL,
                deduction_id INTEGER REFERENCES deduction(id),
                person_ref TEXT, program TEXT, period TEXT,
                amount_fen INTEGER NOT NULL DEFAULT 0,
                reverses TEXT UNIQUE,
                status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'accepted', 'rejected')),
                received_at TEXT, reject_reason TEXT,
                PRIMARY KEY (device_id, seq));
            CREATE INDEX record_usage ON record(person_ref, program, period);
            CREATE INDEX record_status ON record(status, device_id, seq);
            CREATE TRIGGER record_never_edited BEFORE UPDATE OF device_id, seq, record_id, kind, created_at, body, amount_fen ON record
                BEGIN SELECT RAISE(ABORT, 'settlement records are never edited'); END;
            CREATE TRIGGER record_kept_until_acknowledged BEFORE DELETE ON record WHEN OLD.status != 'accepted'
                BEGIN SELECT RAISE(ABORT, 'unacknowledged settlement records are never deleted'); END;

            -- What a receipt prints beyond its settlement record, masked: for reprints.
            CREATE TABLE receipt_info (
                record_id TEXT PRIMARY KEY REFERENCES record(record_id),
                holder_masked TEXT NOT NULL, allowance_left_fen INTEGER, matter_name TEXT,
                printed_at TEXT, print_error TEXT);
            """)
        }
        m.registerMigration("snapshot-generations") { db in try SnapshotLoader.Generation.migrate(db) }
        m.registerMigration("bill-outcomes") { db in try KioskStore.migrateBillOutcomes(db) }
        m.registerMigration("legal-aid-contact") { db in try KioskStore.migrateContacts(db) }
        m.registerMigration("ledger-pages") { db in try KioskStore.migrateLedgerPages(db) }
        m.registerMigration("checks-as-comparisons") { db in try KioskStore.migrateChecksAsComparisons(db) }
        return m
    }
}

/// A store failure, with the full-disk case named.
public struct StoreError: Error, CustomStringConvertible {
    /// What kind of failure: a full disk (no new subsidies, upload spec §4), a store that
    /// cannot be written, a damaged store, or anything else.
    public enum Kind: Sendable { case diskFull, readOnly, corrupt, other }
    /// What kind of failure this is.
    public var kind: Kind
    /// The failure in one line, for the operator.
    public var message: String

    /// A failure of the given kind, with its message.
    public init(kind: Kind, message: String) { self.kind = kind; self.message = message }

    /// Names any error: a `StoreError` stays itself, an SQLite result code becomes its kind.
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

    /// The message.
    public var description: String { message }
}
