import Crypto
import KioskProtocol
import Foundation
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
final class PublicationGate: Sendable {
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

    struct DatabaseService: Service {
        let database: HubDatabase
        func run() async throws {
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

    // MARK: storing a batch (upload spec §5)

    /// Answers and stores a batch whose sender is checked (§5 step 1: a registered, active
    /// device signed it, and every `record_id` names it), in one transaction, record by record
    /// in batch order: step 2 idempotence, step 3 order, then structure and step 4 content
    /// (the first failing check's reason), and step 5 flags. `received_at` is read from
    /// `now` inside the transaction.
    func store(batchID: String, deviceID: String, device: Roster.Device, roster: Roster, sentAt: String, records: [IncomingRecord],
               consentStart: Date? = nil,
               now: @escaping @Sendable () -> Date, format: @escaping @Sendable (Date) -> String) async throws -> [RecordResult] {
        // The pure checks outside the writer's lock.
        var subsidies: [SubsidyFields?] = []
        var bills: [BillKey: [BillPart]] = [:]
        var seen = Set<String>()
        for r in records {
            guard let s = r.record?.medicalSubsidy else { subsidies.append(nil); continue }
            subsidies.append(s)
            if seen.insert(r.recordID).inserted {
                bills[s.billKey, default: []].append(BillPart(recordID: r.recordID, billFen: s.billFen, patientPaysFen: s.patientPaysFen,
                                                              subsidyFen: s.subsidyFen))
            }
        }
        // The cards' acknowledgements (Ed25519, the costly part) verified up front, on every core.
        var ackChecks = [Refusal?](repeating: nil, count: records.count)
        let subsidyFields = subsidies
        ackChecks.withUnsafeMutableBufferPointer { out in
            let out = UncheckedBuffer(out)
            DispatchQueue.concurrentPerform(iterations: records.count) { i in
                guard let s = subsidyFields[i] else { return }
                out.buffer[i] = RecordRules.cardAck(s, cardKey: roster.cards[s.cardNumber]?.publicKey)
            }
        }
        let batchBills = bills
        let cardAcks = ackChecks
        return try await engine.writeAsync { c in
            let instant = now()
            let receivedAt = format(instant)
            let checker = Checker(c: c, deviceID: deviceID, device: device, roster: roster, batchBills: batchBills, consentStart: consentStart)
            // Inserts are gathered and written a few hundred rows a statement (on PostgreSQL a
            // statement is a round trip): before any check that reads stored records, and at
            // the end, so every check still sees this batch's earlier records.
            var writes = PendingWrites()
            // Step 2's first answers: those stored, read at once, and those given in this batch.
            var answered = try Self.firstAnswers(c, ids: records.map(\.recordID))
            var lastSeq = try Self.lastAnsweredSeq(c, deviceID: deviceID)
            var results: [RecordResult] = []
            results.reserveCapacity(records.count)
            var counts = (accepted: 0, duplicates: 0, rejected: 0)
            for (index, r) in records.enumerated() {
                let text = String(decoding: r.bytes, as: UTF8.self)
                // Step 2: a record_id answered before gets its first answer again, or `conflict`.
                if let first = answered[r.recordID] {
                    if first.sha256 == r.sha256 {
                        if first.status == "accepted" {
                            results.append(RecordResult(recordID: r.recordID, status: .duplicate(receivedAt: first.answeredAt, flags: Self.flags(first.flags))))
                            counts.duplicates += 1
                        } else {
                            let reason = first.reason ?? "rejected"
                            writes.rejection(r.recordID, deviceID, reason, body: text, sha256: r.sha256, receivedAt, batchID)
                            results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: reason, detail: first.detail)))
                            counts.rejected += 1
                        }
                    } else {
                        writes.rejection(r.recordID, deviceID, "conflict", body: text, sha256: r.sha256, receivedAt, batchID)
                        results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: "conflict",
                                                                                            detail: "record_id answered before, with other content")))
                        counts.rejected += 1
                    }
                    continue
                }
                // Step 3: order; then the record's structure and step 4, its content.
                var refusal: Refusal?
                if r.seq != lastSeq + 1 {
                    refusal = Refusal("seq_gap", "expected seq \(lastSeq + 1), got \(r.seq)")
                } else if let broken = r.structureRefusal {
                    refusal = broken
                } else {
                    if r.record?.medicalSubsidy != nil || r.record?.subsidyReversal != nil || r.record?.legalAidApplication != nil {
                        try writes.flush(c)
                    }
                    refusal = try checker.content(r, subsidy: subsidyFields[index], cardAck: cardAcks[index])
                }
                lastSeq = max(lastSeq, r.seq)
                if let refusal {
                    writes.answer([r.recordID, deviceID, r.seq, r.sha256, "rejected", refusal.reason, refusal.detail, "", receivedAt, batchID])
                    writes.rejection(r.recordID, deviceID, refusal.reason, body: text, sha256: r.sha256, receivedAt, batchID)
                    answered[r.recordID] = FirstAnswer(sha256: r.sha256, status: "rejected", reason: refusal.reason, detail: refusal.detail,
                                                       flags: "", answeredAt: receivedAt)
                    results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: refusal.reason, detail: refusal.detail)))
                    counts.rejected += 1
                    continue
                }
                // Step 5: flags, not refusals.
                let flags = checker.flags(r, subsidy: subsidyFields[index], now: instant)
                let flagText = flags.joined(separator: ",")
                guard let record = r.record else { throw HubDatabaseError.inconsistent("record \(r.recordID) passed its checks without being read") }
                writes.answer([r.recordID, deviceID, r.seq, r.sha256, "accepted", String?.none, String?.none, flagText, receivedAt, batchID])
                let s = record.medicalSubsidy, l = record.legalAidApplication, v = record.subsidyReversal
                writes.record([
                    r.recordID, deviceID, r.seq, record.kind.rawValue, text, r.sha256, receivedAt, batchID, flagText,
                    s?.institution, s?.cardNumber ?? l?.cardNumber ?? record.alert?.cardNumber, s?.personRef ?? l?.personRef,
                    s?.program ?? l?.program, s?.period,
                    s?.billReference, s?.cardSequence, s?.billFen, s?.patientPaysFen, s?.subsidyFen,
                    v?.reverses, v?.amountFen,
                ])
                answered[r.recordID] = FirstAnswer(sha256: r.sha256, status: "accepted", reason: nil, detail: nil, flags: flagText, answeredAt: receivedAt)
                results.append(RecordResult(recordID: r.recordID, status: .accepted(receivedAt: receivedAt, flags: flags)))
                counts.accepted += 1
            }
            try writes.flush(c)
            try c.execute("""
                INSERT INTO hub_batch (batch_id, device_id, sent_at, received_at, records, accepted, duplicates, rejected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, batchID, deviceID, sentAt, receivedAt, records.count, counts.accepted, counts.duplicates, counts.rejected)
            return results
        }
    }

    /// The first answer given to a `record_id` (upload spec §5 step 2).
    struct FirstAnswer {
        var sha256: String
        var status: String
        var reason: String?
        var detail: String?
        var flags: String
        var answeredAt: String
    }

    /// The stored first answers of `ids`, a few hundred ids a statement.
    static func firstAnswers(_ c: any SQLConnection, ids: [String]) throws -> [String: FirstAnswer] {
        var out: [String: FirstAnswer] = [:]
        let unique = Array(Set(ids))
        for start in stride(from: 0, to: unique.count, by: 250) {
            let chunk = Array(unique[start..<min(start + 250, unique.count)])
            for row in try c.rows("SELECT record_id, sha256, status, reason, detail, flags, answered_at FROM hub_answer WHERE record_id IN (\(placeholderTuples(chunk.count, width: 1)))",
                                  arguments: chunk.map { .text($0) }) {
                out[try row.text("record_id")] = FirstAnswer(sha256: try row.text("sha256"), status: try row.text("status"), reason: try row.optionalText("reason"),
                                                             detail: try row.optionalText("detail"), flags: try row.optionalText("flags") ?? "",
                                                             answeredAt: try row.text("answered_at"))
            }
        }
        return out
    }

    /// Answers, records and refusals waiting to be written, in that order (a record's answer first).
    struct PendingWrites {
        private var answers: [[SQLValue]] = []
        private var records: [[SQLValue]] = []
        private var rejections: [[SQLValue]] = []

        mutating func answer(_ values: [any SQLBindable]) { answers.append(values.map(\.sqlValue)) }
        mutating func record(_ values: [any SQLBindable]) { records.append(values.map(\.sqlValue)) }
        private var bodies: [String: String] = [:]
        /// A refusal; its body kept once by digest (issue 21 item 3: a kiosk re-sending a
        /// conflicting record a thousand times stores its body once).
        mutating func rejection(_ recordID: String?, _ deviceID: String, _ reason: String, body: String, sha256: String, _ receivedAt: String,
                                _ batchID: String) {
            rejections.append([recordID.sqlValue, .text(deviceID), .text(reason), .text(""), .text(sha256), .text(receivedAt), .text(batchID)])
            bodies[sha256] = body
        }

        mutating func flush(_ c: any SQLConnection) throws {
            try Self.insert(c, "hub_answer (record_id, device_id, seq, sha256, status, reason, detail, flags, answered_at, batch_id)", answers)
            try Self.insert(c, """
                hub_record (record_id, device_id, seq, kind, body, sha256, received_at, batch_id, flags, institution, card_number,
                    person_ref, program, period, bill_reference, card_sequence, bill_fen, patient_pays_fen, subsidy_fen, reverses, amount_fen)
                """, records)
            try Self.insert(c, "hub_rejection (record_id, device_id, reason, body, body_sha256, received_at, batch_id)", rejections)
            try c.executeChunked(bodies.sorted { $0.key < $1.key }.map { [.text($0.key), .text($0.value)] }) {
                "INSERT INTO hub_rejected_body (sha256, body) VALUES \($0) ON CONFLICT (sha256) DO NOTHING"
            }
            bodies.removeAll(keepingCapacity: true)
            answers.removeAll(keepingCapacity: true)
            records.removeAll(keepingCapacity: true)
            rejections.removeAll(keepingCapacity: true)
        }

        static func insert(_ c: any SQLConnection, _ into: String, _ rows: [[SQLValue]]) throws {
            try c.executeChunked(rows) { "INSERT INTO \(into) VALUES \($0)" }
        }
    }

    /// Upload spec §5 step 4 and 5 for one record, against the roster and what is stored
    /// (this batch's earlier records included: they are stored as the loop goes).
    struct Checker {
        let c: any SQLConnection
        let deviceID: String
        let device: Roster.Device
        let roster: Roster
        let batchBills: [BillKey: [BillPart]]
        /// Applications without the card's consent made before this instant are accepted with
        /// the flag `no_card_auth`; after it (and always when nil) they are `bad_card_auth`.
        var consentStart: Date? = nil

        /// Whether `r` is a legal-aid application without consent, made before the consent start.
        func beforeConsent(_ r: IncomingRecord) -> Bool {
            guard let record = r.record, let l = record.legalAidApplication, l.cardAuth == nil, l.cardUsageDigest == nil,
                  let start = consentStart, let created = Timestamp.date(record.createdAt) else { return false }
            return created < start
        }

        /// The first failing content check's refusal, in the spec's order, or nil.
        /// `cardAck`: `RecordRules.cardAck` of a `medical_subsidy`, verified beforehand.
        func content(_ r: IncomingRecord, subsidy: SubsidyFields?, cardAck: Refusal?) throws -> Refusal? {
            guard let record = r.record else { return r.structureRefusal ?? Refusal("bad_fields") }
            switch record.content {
            case .medicalSubsidy:
                guard let s = subsidy else { return Refusal("bad_fields") }
                if let bad = RecordRules.amounts(s, bill: try bill(s)) { return bad }
                guard let program = roster.programs[s.program], program.cardType == "medical" else {
                    return Refusal("unknown_program", "\(s.program) is not a medical program of the roster")
                }
                guard roster.cards[s.cardNumber]?.personRef == s.personRef else {
                    return Refusal("unknown_card", "card \(s.cardNumber) is not in the roster under person_ref \(s.personRef)")
                }
                if let bad = cardAck { return bad }
                // One card write acknowledges one bill: an acknowledgement replayed for another bill is no card in the reader.
                if let used = try c.text("""
                    SELECT record_id FROM hub_record WHERE card_number = ? AND card_sequence = ? AND kind = 'medical_subsidy'
                        AND NOT (device_id = ? AND bill_reference = ?) LIMIT 1
                    """, s.cardNumber, s.cardSequence, deviceID, s.billReference) {
                    return Refusal("bad_card_ack", "the write \(s.cardSequence) of card \(s.cardNumber) was acknowledged for another bill (\(used))")
                }
                guard let institution = device.institution, institution == s.institution else {
                    return Refusal("wrong_institution", "\(s.institution) is not the institution of \(deviceID)")
                }
                if let other = try c.text("""
                    SELECT device_id FROM hub_record WHERE bill_reference = ? AND institution = ? AND device_id != ? LIMIT 1
                    """, s.billReference, institution, deviceID) {
                    return Refusal("duplicate_bill", "bill \(s.billReference) of \(institution) was already used by \(other)")
                }
                return nil
            case .subsidyReversal(let reversal):
                let reverses = reversal.reverses
                let amount = reversal.amountFen
                guard (0...RecordRules.maximumBillFen).contains(amount) else {
                    return Refusal("bad_amounts", "amount_fen is not 0–\(RecordRules.maximumBillFen)")
                }
                guard RecordRules.sequence(recordID: reverses, deviceID: deviceID) != nil else {
                    return Refusal("bad_reversal", "\(reverses) is not a record of \(deviceID)")
                }
                guard let target = try c.row("SELECT kind, subsidy_fen FROM hub_record WHERE record_id = ?", reverses),
                      try target.text("kind") == "medical_subsidy" else {
                    return Refusal("bad_reversal", "no medical_subsidy \(reverses) is stored")
                }
                if let by = try c.text("SELECT record_id FROM hub_record WHERE reverses = ?", reverses) {
                    return Refusal("bad_reversal", "\(reverses) was already reversed by \(by)")
                }
                let subsidy = try target.int("subsidy_fen")
                guard amount == subsidy else {
                    return Refusal("bad_reversal", "amount_fen \(amount) is not the subsidy_fen \(subsidy) of \(reverses)")
                }
                return nil
            case .legalAidApplication(let application):
                let code = application.program
                guard let program = roster.programs[code], program.cardType == "legal_aid" else {
                    return Refusal("unknown_program", "\(code) is not a legal-aid program of the roster")
                }
                let number = application.cardNumber, ref = application.personRef
                guard let card = roster.cards[number], card.personRef == ref else {
                    return Refusal("unknown_card", "card \(number) is not in the roster under person_ref \(ref)")
                }
                if beforeConsent(r) { return nil }
                if let refusal = RecordRules.cardAuth(application, deviceID: deviceID, createdAt: record.createdAt, cardKey: card.publicKey) {
                    return refusal
                }
                // A consent is good for one application: the same card_auth stored before is refused.
                for body in try c.rows("SELECT body FROM hub_record WHERE kind = 'legal_aid_application' AND card_number = ?", number) {
                    let text = try body.text("body")
                    if (try? SettlementRecord(json: text))?.legalAidApplication?.cardAuth == application.cardAuth {
                        return Refusal("bad_card_auth", "this card_auth is already stored with another application")
                    }
                }
                return nil
            case .alert:
                return nil
            }
        }

        /// The parts of `s`'s bill: those stored (this device's, the same card write) and
        /// those in this batch.
        func bill(_ s: SubsidyFields) throws -> [BillPart] {
            var parts = try c.rows("""
                SELECT record_id, bill_fen, patient_pays_fen, subsidy_fen FROM hub_record
                WHERE bill_reference = ? AND device_id = ? AND card_number = ? AND card_sequence = ? AND kind = 'medical_subsidy'
                """, s.billReference, deviceID, s.cardNumber, s.cardSequence).map {
                BillPart(recordID: try $0.text("record_id"), billFen: try $0.int("bill_fen"), patientPaysFen: try $0.int("patient_pays_fen"),
                         subsidyFen: try $0.int("subsidy_fen"))
            }
            let stored = Set(parts.map(\.recordID))
            parts += (batchBills[s.billKey] ?? []).filter { !stored.contains($0.recordID) }
            return parts
        }

        func flags(_ r: IncomingRecord, subsidy: SubsidyFields?, now: Date) -> [String] {
            var flags: [String] = []
            if let s = subsidy, let limit = roster.programs[s.program]?.limitFen, s.usedAfterFen > limit { flags.append("over_limit") }
            if RecordRules.timeSuspect(createdAt: r.record?.createdAt ?? "", now: now) { flags.append("time_suspect") }
            if beforeConsent(r) { flags.append("no_card_auth") }
            return flags
        }
    }
}

/// A buffer written at distinct indices by `concurrentPerform`'s iterations.
///
/// `@unchecked Sendable`, and why that is sound: it is used only inside
/// `withUnsafeMutableBufferPointer`, by `DispatchQueue.concurrentPerform`, which returns after
/// every iteration has finished (so the pointer never outlives the array's borrow); iteration
/// `i` writes element `i` only and nothing reads the buffer until all have finished.
struct UncheckedBuffer<T>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<T>
    init(_ buffer: UnsafeMutableBufferPointer<T>) { self.buffer = buffer }
}

/// What the hub answers for one record.
struct RecordResult: Sendable, Equatable {
    enum Status: Sendable, Equatable {
        case accepted(receivedAt: String, flags: [String])
        case duplicate(receivedAt: String, flags: [String])
        case rejected(reason: String, detail: String?)
    }
    var recordID: String?
    var status: Status
}
