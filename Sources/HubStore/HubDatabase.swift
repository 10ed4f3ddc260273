import Crypto
import KioskProtocol
import Foundation
import HubRules
import GRDB
import ServiceLifecycle
import Synchronization

/// One record as the hub holds it: its exact JSON, the SHA-256 of those bytes, when it was
/// first received, and the flags it was accepted with (upload spec §5 step 5).
public struct HubRecord: Sendable, Equatable {
    /// The record's `record_id`: `<device_id>-<seq>` (upload spec §1).
    public var recordID: String
    /// The device that signed the batch it came in.
    public var deviceID: String
    /// The device's sequence number, the one its `record_id` names.
    public var seq: Int64
    /// `medical_subsidy`, `subsidy_reversal`, `legal_aid_application` or `alert`.
    public var kind: String
    /// The record's exact JSON text, byte for byte as the kiosk sent it.
    public var body: String
    /// Lowercase hex SHA-256 of `body`'s bytes.
    public var sha256: String
    /// When the hub first received it (RFC 3339, UTC), stamped inside the storing transaction.
    public var receivedAt: String
    /// The `batch_id` of the batch that brought it.
    public var batchID: String
    /// The flags it was accepted with (`over_limit`, `time_suspect`, `no_card_auth`); empty for none.
    public var flags: [String]

    init(_ r: SQLRow) throws {
        recordID = try r.text("record_id"); deviceID = try r.text("device_id"); seq = try r.int("seq"); kind = try r.text("kind")
        body = try r.text("body"); sha256 = try r.text("sha256"); receivedAt = try r.text("received_at"); batchID = try r.text("batch_id")
        flags = HubDatabase.flags(try r.optionalText("flags"))
    }
}

/// A record the hub refused, kept for the audit (and for tests): every refusal, a `conflict`
/// or a repeated answer included.
public struct HubRejection: Sendable, Equatable {
    /// The refused record's `record_id`; nil when the refusal was stored without one.
    public var recordID: String?
    /// The device whose batch carried the record.
    public var deviceID: String
    /// The reason answered (`conflict`, `seq_gap`, `bad_amounts`, …).
    public var reason: String
    /// The refused record's exact JSON text (kept once by its digest, issue 21 item 3).
    public var body: String
    /// When the hub received it (RFC 3339, UTC).
    public var receivedAt: String
}

/// The first answer the hub gave a `record_id` (upload spec §5 step 2): what it answers again.
public struct HubAnswer: Sendable, Equatable {
    /// The first answer: the record accepted (a repeat is answered `duplicate`) or rejected.
    public enum Status: String, Sendable { case accepted, rejected }
    /// The `record_id` answered.
    public var recordID: String
    /// The device the record came from.
    public var deviceID: String
    /// The record's sequence number.
    public var seq: Int64
    /// Accepted or rejected.
    public var status: Status
    /// The refusal's reason; nil when accepted.
    public var reason: String?
    /// When the answer was given: the `received_at` of the batch that first brought the record.
    public var answeredAt: String
}

/// The publication lock once taken (kept while the database is open in this process), and
/// the in-process turn: an object of its own, outside `HubDatabase`'s throwing initialisers.
package final class PublicationGate: Sendable {
    let lease = Mutex<(any SQLLease)?>(nil)
    let turn = NSLock()
}

/// Another process holds the publication lock (sync spec §5: one publisher at a time).
public struct PublicationLockHeld: Error, CustomStringConvertible {
    /// Says that another publisher holds the lock and this one stands by.
    public var description: String { "another publisher holds the publication lock: this one stands by" }
}

/// A hub database that cannot be opened as it is, or an inconsistency found while working in it.
public enum HubDatabaseError: Error, CustomStringConvertible {
    /// The SQLite file at this path is a version 1 hub database: version 2 starts with a new file.
    case versionOneFile(String)
    /// A check let through what it should have refused (a bug): the batch's transaction is rolled back.
    case inconsistent(String)
    /// The error in words, for the log or the operator.
    public var description: String {
        switch self {
        case .inconsistent(let why): return "hub inconsistency: \(why)"
        case .versionOneFile(let p): return "\(p) is a version 1 hub database; start version 2 with a new file"
        }
    }
}

/// The hub's database: the first answer to every `record_id`, the accepted records (never
/// edited), an audit of every refusal, the roster, the shelf's index and the publisher's
/// state; one write transaction per batch, every check of upload spec §5 that needs the store
/// made inside it. Either engine (issue 12): a SQLite file (GRDB, WAL, `synchronous = FULL`),
/// the default, or PostgreSQL, shared by several hub processes.
public final class HubDatabase: Sendable {
    /// The storage engine: SQLite through GRDB, or PostgreSQL (issue 12).
    public let engine: any SQLEngine
    /// The SQLite file, or the PostgreSQL location (without its password).
    public let path: String
    /// Where published files are kept: `<database>.snapshots/` beside a SQLite file; a folder
    /// given with PostgreSQL (shared by the hub processes that serve it).
    public let shelf: URL

    /// Which engine the database runs on.
    public var kind: SQLEngineKind { engine.kind }
    /// The publication lock and the in-process publication turn.
    private let gate = PublicationGate()

    /// One publication at a time within this process (the lease keeps out the others).
    public func publishing<T>(_ body: () throws -> T) rethrows -> T {
        gate.turn.lock()
        defer { gate.turn.unlock() }
        return try body()
    }

    /// Takes the publication lock, or keeps it: publication runs in one process at a time
    /// (the others stand by and take over when the holder dies: the lock goes with its
    /// process, or its database session). Throws `PublicationLockHeld` while another holds it.
    public func holdPublicationLock() throws {
        try gate.lease.withLock { held in
            if let h = held {
                if h.isHeld() { return }
                h.release()
                held = nil
            }
            guard let taken = try engine.tryPublicationLease() else { throw PublicationLockHeld() }
            held = taken
        }
    }

    /// Gives the publication lock up (another process's publisher takes over).
    public func releasePublicationLock() {
        gate.lease.withLock { $0?.release(); $0 = nil }
    }

    /// A SQLite hub database (created and migrated when new).
    public init(path: String) throws {
        self.path = path
        shelf = URL(fileURLWithPath: path + ".snapshots", isDirectory: true)
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        config.busyMode = .timeout(10)
        let pool = try DatabasePool(path: path, configuration: config)
        let versionOne = try pool.read { db in try db.tableExists("hub_record") && !db.tableExists("hub_answer") }
        if versionOne { throw HubDatabaseError.versionOneFile(path) }
        var m = DatabaseMigrator()
        for (name, sql) in Self.sqliteMigrations {
            m.registerMigration(name) { db in try db.execute(sql: sql) }
        }
        try m.migrate(pool)
        engine = SQLiteEngine(pool: pool, path: path)
    }

    /// A PostgreSQL hub database (the schema created or brought up to date, once, whichever
    /// process comes first); published files are kept in `shelf`.
    public init(postgres location: PostgresLocation, shelf: URL) throws {
        path = location.description
        self.shelf = shelf
        let engine = try PostgresEngine(location: location)
        try engine.migrate(Self.postgresMigrations)
        self.engine = engine
    }

    /// Province set-up: run by the tables' owner (after migrating). Two login roles, neither
    /// owning a table (so neither can alter one or disable its refusal triggers), each given
    /// what its processes need and nothing more (issue 21 item 1):
    /// - the hub role reads the roster, devices, cards and the shelf's index; inserts records,
    ///   answers, refusals, batches, certificate requests and the roster-change inbox; never
    ///   edits or deletes a record or an answer, never writes the roster or the shelf;
    /// - the publisher role reads everything; writes the roster, the certificates, the shelf's
    ///   index and its own tables, and empties the inbox; never writes records or answers.
    /// The migrations table is read only to both. Run again after an upgrade that adds tables.
    public func grant(hubRole: String, publisherRole: String? = nil) throws {
        guard engine is PostgresEngine else { throw PostgresLocation.Invalid.url("grants are for a PostgreSQL hub") }
        let roles = [hubRole] + (publisherRole.map { [$0] } ?? [])
        for role in roles {
            guard PostgresLocation.isPlainName(role) else { throw PostgresLocation.Invalid.url("role \(role) is not a plain name") }
        }
        try engine.write { c in
            guard let schema = try c.text("SELECT current_schema()"), PostgresLocation.isPlainName(schema) else {
                throw HubDatabaseError.inconsistent("the connection's schema is not a plain name")
            }
            var statements: [String] = []
            for role in roles {
                statements += [
                    "GRANT USAGE ON SCHEMA \(schema) TO \(role)",
                    "REVOKE ALL ON ALL TABLES IN SCHEMA \(schema) FROM \(role)",
                    "GRANT SELECT ON ALL TABLES IN SCHEMA \(schema) TO \(role)",
                    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA \(schema) TO \(role)",
                ]
            }
            statements += [
                "GRANT INSERT ON \(Self.hubInserts.joined(separator: ", ")) TO \(hubRole)",
                "GRANT UPDATE ON certificate_request TO \(hubRole)",
            ]
            if let publisherRole {
                statements.append("GRANT INSERT, UPDATE, DELETE ON \(Self.publisherWrites.joined(separator: ", ")) TO \(publisherRole)")
            } else {
                // One role for both (a district's set-up, or an older province): the publisher's tables too.
                statements.append("GRANT INSERT, UPDATE, DELETE ON \(Self.publisherWrites.joined(separator: ", ")) TO \(hubRole)")
            }
            for sql in statements { try c.execute(sql, arguments: []) }
        }
    }

    /// What hub processes insert (issue 21 item 1).
    static let hubInserts = ["hub_answer", "hub_record", "hub_rejection", "hub_rejected_body", "hub_batch", "certificate_request", "roster_inbox",
                             "roster_inbox_part"]
    /// What the publisher writes (issue 21 item 1).
    static let publisherWrites = ["roster_entry", "roster_change", "roster_tombstone", "published_entry", "publisher_alert", "publisher_mark",
                                  "hub_snapshot", "certificate_request", "roster_inbox", "roster_inbox_part"]

    /// The engine named by the command line: `--postgres URL` (with `--shelf`), else `--db FILE`.
    public static func open(db: String, postgres: String?, shelf: String?) throws -> HubDatabase {
        guard let postgres else { return try HubDatabase(path: db) }
        guard let shelf else { throw PostgresLocation.Invalid.url("--postgres needs --shelf DIR, the folder of published files") }
        return try HubDatabase(postgres: try PostgresLocation(url: postgres), shelf: URL(fileURLWithPath: shelf, isDirectory: true))
    }

    /// Releases the engine's connections (PostgreSQL); SQLite closes when the last reference goes.
    public func close() {
        releasePublicationLock()
        (engine as? PostgresEngine)?.close()
    }

    deinit { close() }

    /// The database as a service of the process's `ServiceGroup`: open while the group runs,
    /// closed (PostgreSQL: the pool's connections) when it shuts down.
    public var service: some Service { DatabaseService(database: self) }

    package struct DatabaseService: Service {
        let database: HubDatabase
        package func run() async throws {
            try? await gracefulShutdown()
            database.close()
            // The pool's connections closed before the process goes on to exit.
            await (database.engine as? PostgresEngine)?.shutdown()
        }
    }

    static let sqliteMigrations: [(String, String)] = [
        ("v2", """
        CREATE TABLE hub_answer (
            record_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER NOT NULL, sha256 TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')), reason TEXT, detail TEXT,
            flags TEXT NOT NULL DEFAULT '', answered_at TEXT NOT NULL, batch_id TEXT NOT NULL,
            CHECK ((status = 'rejected') = (reason IS NOT NULL)));
        CREATE INDEX hub_answer_device ON hub_answer(device_id, seq);
        CREATE TABLE hub_record (
            record_id TEXT PRIMARY KEY REFERENCES hub_answer(record_id), device_id TEXT NOT NULL, seq INTEGER NOT NULL,
            kind TEXT NOT NULL, body TEXT NOT NULL, sha256 TEXT NOT NULL, received_at TEXT NOT NULL, batch_id TEXT NOT NULL,
            flags TEXT NOT NULL DEFAULT '',
            institution TEXT, card_number TEXT, person_ref TEXT, program TEXT, period TEXT, bill_reference TEXT,
            card_sequence INTEGER, bill_fen INTEGER, patient_pays_fen INTEGER, subsidy_fen INTEGER,
            reverses TEXT, amount_fen INTEGER);
        CREATE INDEX hub_record_device ON hub_record(device_id, seq);
        CREATE INDEX hub_record_bill ON hub_record(bill_reference, institution) WHERE bill_reference IS NOT NULL;
        CREATE INDEX hub_record_card_write ON hub_record(card_number, card_sequence) WHERE card_sequence IS NOT NULL;
        CREATE UNIQUE INDEX hub_record_reverses ON hub_record(reverses) WHERE reverses IS NOT NULL;
        CREATE TRIGGER hub_answer_never_edited BEFORE UPDATE ON hub_answer
            BEGIN SELECT RAISE(ABORT, 'answers are never edited'); END;
        CREATE TRIGGER hub_answer_never_deleted BEFORE DELETE ON hub_answer
            BEGIN SELECT RAISE(ABORT, 'answers are never deleted'); END;
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
        """),
        ("sync-v1", """
        CREATE TABLE hub_snapshot (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, snapshot_id TEXT NOT NULL UNIQUE, region TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('full', 'delta')), base_snapshot_id TEXT, issued_at TEXT NOT NULL,
            bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, file TEXT NOT NULL, published_at TEXT NOT NULL,
            CHECK ((kind = 'delta') = (base_snapshot_id IS NOT NULL)));
        CREATE INDEX hub_snapshot_region ON hub_snapshot(region, seq);
        """),
        ("roster-v1", """
        CREATE TABLE roster_entry (region TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, line TEXT NOT NULL,
            PRIMARY KEY (region, type, key));
        CREATE TABLE roster_change (seq INTEGER PRIMARY KEY AUTOINCREMENT, change_id TEXT NOT NULL UNIQUE, region TEXT NOT NULL,
            issued_at TEXT NOT NULL, sha256 TEXT NOT NULL, records INTEGER NOT NULL, urgent INTEGER NOT NULL, applied_at TEXT NOT NULL);
        CREATE TABLE published_entry (region TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, line TEXT NOT NULL,
            PRIMARY KEY (region, type, key));
        CREATE TABLE publisher_alert (person_ref TEXT NOT NULL, program TEXT NOT NULL, period TEXT NOT NULL,
            used_fen INTEGER NOT NULL, limit_fen INTEGER NOT NULL, raised_at TEXT NOT NULL,
            PRIMARY KEY (person_ref, program, period));
        """),
        // Incremental publication (sync spec §5: urgent changes within 60 s at any size): each
        // roster entry remembers the change that last touched it, deletions leave a tombstone,
        // and the publisher keeps the mark of what its latest publication had seen, so a delta
        // reads only what moved since then.
        ("roster-v2-incremental", """
        ALTER TABLE roster_entry ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX roster_entry_seq ON roster_entry(region, seq);
        CREATE TABLE roster_tombstone (region TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (region, type, key));
        CREATE INDEX roster_tombstone_seq ON roster_tombstone(region, seq);
        CREATE TABLE publisher_mark (region TEXT PRIMARY KEY, roster_seq INTEGER NOT NULL, record_rowid INTEGER NOT NULL,
            cut TEXT NOT NULL);
        CREATE INDEX hub_record_received ON hub_record(received_at);
        CREATE INDEX hub_record_person ON hub_record(person_ref) WHERE person_ref IS NOT NULL;
        """),
        ("certificates-v1", """
        CREATE TABLE certificate_request (device_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, requested_at TEXT NOT NULL,
            issued_at TEXT, certificate BLOB);
        """),
        // Issue 21 item 4: an entry's key is looked up across regions (a region's key cannot
        // touch another region's devices, persons or cards).
        ("roster-v3-keys", """
        CREATE INDEX roster_entry_key ON roster_entry(type, key);
        """),
        // Issue 21 item 1: roster changes posted to a hub wait here, a MiB a part, for the
        // publisher to verify, archive and apply (the hub role inserts; it never applies).
        ("roster-inbox-v1", """
        CREATE TABLE roster_inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, region TEXT NOT NULL, change_id TEXT NOT NULL,
            bytes INTEGER NOT NULL, received_at TEXT NOT NULL);
        CREATE TABLE roster_inbox_part (inbox_id INTEGER NOT NULL, part INTEGER NOT NULL, data BLOB NOT NULL,
            PRIMARY KEY (inbox_id, part));
        """),
        // Issue 21 item 3: a refused body is kept once by its digest, however often it comes.
        ("rejected-body-v1", """
        ALTER TABLE hub_rejection ADD COLUMN body_sha256 TEXT;
        CREATE TABLE hub_rejected_body (sha256 TEXT PRIMARY KEY, body TEXT NOT NULL);
        """),
        ("roster-inbox-v2", """
        CREATE UNIQUE INDEX roster_inbox_change ON roster_inbox(change_id);
        """),
    ]

    /// The same schema in PostgreSQL's words: `TEXT COLLATE "C"` (keys compare and sort by
    /// byte, as in SQLite), `BIGINT`, identity columns for AUTOINCREMENT, `hub_record.rowid`
    /// made explicit, and a trigger function that refuses edits and deletions.
    static let postgresMigrations: [(name: String, sql: String)] = [
        ("hub-v2", """
        CREATE FUNCTION hub_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;
        CREATE TABLE hub_answer (
            record_id TEXT COLLATE "C" PRIMARY KEY, device_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, sha256 TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')), reason TEXT, detail TEXT,
            flags TEXT NOT NULL DEFAULT '', answered_at TEXT COLLATE "C" NOT NULL, batch_id TEXT NOT NULL,
            CHECK ((status = 'rejected') = (reason IS NOT NULL)));
        CREATE INDEX hub_answer_device ON hub_answer(device_id, seq);
        CREATE TABLE hub_record (
            rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            record_id TEXT COLLATE "C" PRIMARY KEY REFERENCES hub_answer(record_id), device_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL,
            kind TEXT COLLATE "C" NOT NULL, body TEXT NOT NULL, sha256 TEXT NOT NULL, received_at TEXT COLLATE "C" NOT NULL, batch_id TEXT NOT NULL,
            flags TEXT NOT NULL DEFAULT '',
            institution TEXT COLLATE "C", card_number TEXT COLLATE "C", person_ref TEXT COLLATE "C", program TEXT COLLATE "C",
            period TEXT COLLATE "C", bill_reference TEXT COLLATE "C",
            card_sequence BIGINT, bill_fen BIGINT, patient_pays_fen BIGINT, subsidy_fen BIGINT,
            reverses TEXT COLLATE "C", amount_fen BIGINT);
        CREATE INDEX hub_record_device ON hub_record(device_id, seq);
        CREATE INDEX hub_record_bill ON hub_record(bill_reference, institution) WHERE bill_reference IS NOT NULL;
        CREATE INDEX hub_record_card_write ON hub_record(card_number, card_sequence) WHERE card_sequence IS NOT NULL;
        CREATE UNIQUE INDEX hub_record_reverses ON hub_record(reverses) WHERE reverses IS NOT NULL;
        CREATE INDEX hub_record_received ON hub_record(received_at);
        CREATE INDEX hub_record_person ON hub_record(person_ref) WHERE person_ref IS NOT NULL;
        CREATE TRIGGER hub_answer_never_edited BEFORE UPDATE OR DELETE ON hub_answer
            FOR EACH ROW EXECUTE FUNCTION hub_refuse('answers are never edited or deleted');
        CREATE TRIGGER hub_record_never_edited BEFORE UPDATE OR DELETE ON hub_record
            FOR EACH ROW EXECUTE FUNCTION hub_refuse('settlement records are never edited or deleted');
        CREATE TABLE hub_rejection (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, record_id TEXT, device_id TEXT NOT NULL, reason TEXT NOT NULL,
            body TEXT NOT NULL, received_at TEXT NOT NULL, batch_id TEXT NOT NULL);
        CREATE TABLE hub_batch (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, batch_id TEXT NOT NULL, device_id TEXT NOT NULL, sent_at TEXT NOT NULL,
            received_at TEXT NOT NULL, records BIGINT NOT NULL, accepted BIGINT NOT NULL, duplicates BIGINT NOT NULL,
            rejected BIGINT NOT NULL);
        CREATE TABLE hub_snapshot (
            seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, snapshot_id TEXT COLLATE "C" NOT NULL UNIQUE, region TEXT COLLATE "C" NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('full', 'delta')), base_snapshot_id TEXT COLLATE "C", issued_at TEXT COLLATE "C" NOT NULL,
            bytes BIGINT NOT NULL, sha256 TEXT NOT NULL, file TEXT NOT NULL, published_at TEXT COLLATE "C" NOT NULL,
            CHECK ((kind = 'delta') = (base_snapshot_id IS NOT NULL)));
        CREATE INDEX hub_snapshot_region ON hub_snapshot(region, seq);
        CREATE TABLE roster_entry (region TEXT COLLATE "C" NOT NULL, type TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL,
            line TEXT NOT NULL, seq BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (region, type, key));
        CREATE INDEX roster_entry_seq ON roster_entry(region, seq);
        CREATE TABLE roster_change (seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, change_id TEXT COLLATE "C" NOT NULL UNIQUE,
            region TEXT COLLATE "C" NOT NULL, issued_at TEXT NOT NULL, sha256 TEXT NOT NULL, records BIGINT NOT NULL, urgent BIGINT NOT NULL,
            applied_at TEXT COLLATE "C" NOT NULL);
        CREATE TABLE roster_tombstone (region TEXT COLLATE "C" NOT NULL, type TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL,
            seq BIGINT NOT NULL, PRIMARY KEY (region, type, key));
        CREATE INDEX roster_tombstone_seq ON roster_tombstone(region, seq);
        CREATE TABLE published_entry (region TEXT COLLATE "C" NOT NULL, type TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL,
            line TEXT NOT NULL, PRIMARY KEY (region, type, key));
        CREATE TABLE publisher_alert (person_ref TEXT COLLATE "C" NOT NULL, program TEXT COLLATE "C" NOT NULL, period TEXT COLLATE "C" NOT NULL,
            used_fen BIGINT NOT NULL, limit_fen BIGINT NOT NULL, raised_at TEXT NOT NULL, PRIMARY KEY (person_ref, program, period));
        CREATE TABLE publisher_mark (region TEXT COLLATE "C" PRIMARY KEY, roster_seq BIGINT NOT NULL, record_rowid BIGINT NOT NULL,
            cut TEXT COLLATE "C" NOT NULL);
        CREATE TABLE certificate_request (device_id TEXT COLLATE "C" PRIMARY KEY, public_key BYTEA NOT NULL,
            requested_at TEXT COLLATE "C" NOT NULL, issued_at TEXT, certificate BYTEA);
        """),
        ("roster-v3-keys", """
        CREATE INDEX roster_entry_key ON roster_entry(type, key);
        """),
        ("roster-inbox-v1", """
        CREATE TABLE roster_inbox (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, region TEXT COLLATE "C" NOT NULL,
            change_id TEXT COLLATE "C" NOT NULL, bytes BIGINT NOT NULL, received_at TEXT NOT NULL);
        CREATE TABLE roster_inbox_part (inbox_id BIGINT NOT NULL, part BIGINT NOT NULL, data BYTEA NOT NULL,
            PRIMARY KEY (inbox_id, part));
        """),
        ("rejected-body-v1", """
        ALTER TABLE hub_rejection ADD COLUMN body_sha256 TEXT;
        CREATE TABLE hub_rejected_body (sha256 TEXT COLLATE "C" PRIMARY KEY, body TEXT NOT NULL);
        """),
        ("roster-inbox-v2", """
        CREATE UNIQUE INDEX roster_inbox_change ON roster_inbox(change_id);
        """),
    ]

    /// The accepted record stored under `recordID`, nil if none (refusals are in `rejections()`).
    public func record(_ recordID: String) throws -> HubRecord? {
        try engine.read { c in try c.row("SELECT * FROM hub_record WHERE record_id = ?", recordID).map(HubRecord.init) }
    }

    /// Accepted records: one device's in `seq` order, or (nil) every device's by device and `seq`.
    /// Read whole into memory: for tests.
    public func records(deviceID: String? = nil) throws -> [HubRecord] {
        try engine.read { c in
            if let deviceID {
                return try c.rows("SELECT * FROM hub_record WHERE device_id = ? ORDER BY seq", deviceID).map(HubRecord.init)
            }
            return try c.rows("SELECT * FROM hub_record ORDER BY device_id, seq").map(HubRecord.init)
        }
    }

    /// How many accepted records are stored: one device's, or (nil) all; `GET /v1/health` reports the total.
    public func recordCount(deviceID: String? = nil) throws -> Int {
        try engine.read { c in
            if let deviceID {
                return Int(try c.int("SELECT COUNT(*) FROM hub_record WHERE device_id = ?", deviceID) ?? 0)
            }
            return Int(try c.int("SELECT COUNT(*) FROM hub_record") ?? 0)
        }
    }

    /// Every refusal stored, oldest first, each with its body (the audit).
    public func rejections() throws -> [HubRejection] {
        try engine.read { c in
            try c.rows("""
                SELECT r.record_id, r.device_id, r.reason, COALESCE(b.body, r.body) AS body, r.received_at
                FROM hub_rejection r LEFT JOIN hub_rejected_body b ON b.sha256 = r.body_sha256 ORDER BY r.id
                """).map {
                HubRejection(recordID: try $0.optionalText("record_id"), deviceID: try $0.text("device_id"), reason: try $0.text("reason"),
                             body: try $0.text("body"), receivedAt: try $0.text("received_at"))
            }
        }
    }

    /// The first answer given to `recordID`, if any.
    public func answer(_ recordID: String) throws -> HubAnswer? {
        try engine.read { c in
            try c.row("SELECT * FROM hub_answer WHERE record_id = ?", recordID).map {
                HubAnswer(recordID: try $0.text("record_id"), deviceID: try $0.text("device_id"), seq: try $0.int("seq"),
                          status: HubAnswer.Status(rawValue: try $0.text("status")) ?? .rejected, reason: try $0.optionalText("reason"),
                          answeredAt: try $0.text("answered_at"))
            }
        }
    }

    /// Answers given (tests: that nothing was answered twice or lost).
    public func answerCount() throws -> Int {
        try engine.read { c in Int(try c.int("SELECT COUNT(*) FROM hub_answer") ?? 0) }
    }

    /// The highest `seq` answered for a device (accepted or rejected), 0 before the first.
    public func lastAnsweredSeq(deviceID: String) throws -> Int64 {
        try engine.read { c in try Self.lastAnsweredSeq(c, deviceID: deviceID) }
    }

    /// Batches received (whatever their answer): for tests and the operator.
    public func batchCount() throws -> Int {
        try engine.read { c in Int(try c.int("SELECT COUNT(*) FROM hub_batch") ?? 0) }
    }

    static func lastAnsweredSeq(_ c: any SQLConnection, deviceID: String) throws -> Int64 {
        try c.int("SELECT MAX(seq) FROM hub_answer WHERE device_id = ?", deviceID) ?? 0
    }

    static func flags(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map(String.init)
    }
}
