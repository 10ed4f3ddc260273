import GRDB

extension KioskStore {
    /// Issue 24 item 4: fewer pages per deduction. Measured on a 1,000,000-person store (WAL
    /// frames of each step), a decision + commit wrote 4 + 13 pages at the median; each page
    /// written costs the WAL a frame and the disk its bytes before the `fdatasync`. What each
    /// change takes away:
    ///
    /// - `deduction` loses `AUTOINCREMENT`: the `sqlite_sequence` page written by every begin.
    ///   Deductions are never deleted, so a plain rowid alias never hands an id out twice.
    /// - `deduction_state (state, card_number)` becomes `deduction_pending (card_number) WHERE
    ///   state = 'pending'`: a commit removed its entry at the end of the index and inserted a
    ///   committed one on a page of its own; now it only removes it (and the index holds the
    ///   few pending deductions, not every one ever made).
    /// - `deduction_bill` keys on a new `voided` column (bound to `state` by a CHECK) instead of
    ///   `state`: a commit changes `state`, which made SQLite rewrite the bill index's entry;
    ///   `voided` only changes when a deduction is voided.
    /// - `record.reverses` loses its `UNIQUE` (an index entry for every record, reversal or
    ///   not) for a partial unique index over the reversals alone.
    ///
    /// The tables are rebuilt in place (the copy keeps every row and rowid); the triggers
    /// and indexes are made again as they were.
    static func migrateLedgerPages(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE deduction_new (
                id INTEGER PRIMARY KEY,
                device_id TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'voided')),
                card_number TEXT NOT NULL, person_ref TEXT NOT NULL, period TEXT NOT NULL,
                card_sequence INTEGER NOT NULL, usage_object BLOB NOT NULL,
                card_challenge BLOB NOT NULL CHECK (length(card_challenge) = 16), card_ack BLOB,
                bill_reference TEXT NOT NULL, bill_fen INTEGER NOT NULL CHECK (bill_fen > 0),
                allocations TEXT NOT NULL, snapshot_id TEXT NOT NULL, institution TEXT NOT NULL,
                created_at TEXT NOT NULL, resolved_at TEXT, resolution TEXT,
                voided INTEGER NOT NULL DEFAULT 0 CHECK (voided = (state = 'voided')),
                CHECK (card_ack IS NULL OR length(card_ack) = 64));
            INSERT INTO deduction_new (id, device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                card_ack, bill_reference, bill_fen, allocations, snapshot_id, institution, created_at, resolved_at, resolution, voided)
                SELECT id, device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                card_ack, bill_reference, bill_fen, allocations, snapshot_id, institution, created_at, resolved_at, resolution,
                state = 'voided' FROM deduction;
            DROP TABLE deduction;
            ALTER TABLE deduction_new RENAME TO deduction;
            CREATE INDEX deduction_pending ON deduction(card_number) WHERE state = 'pending';
            CREATE UNIQUE INDEX deduction_bill ON deduction(bill_reference) WHERE voided = 0;

            CREATE TABLE record_new (
                device_id TEXT NOT NULL, seq INTEGER NOT NULL,
                record_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL CHECK (kind IN ('medical_subsidy', 'subsidy_reversal', 'legal_aid_application', 'alert')),
                created_at TEXT NOT NULL,
                body TEXT NOT NULL,
                deduction_id INTEGER REFERENCES deduction(id),
                person_ref TEXT, program TEXT, period TEXT,
                amount_fen INTEGER NOT NULL DEFAULT 0,
                reverses TEXT,
                status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'accepted', 'rejected')),
                received_at TEXT, reject_reason TEXT,
                PRIMARY KEY (device_id, seq));
            INSERT INTO record_new (rowid, device_id, seq, record_id, kind, created_at, body, deduction_id, person_ref, program, period,
                amount_fen, reverses, status, received_at, reject_reason)
                SELECT rowid, device_id, seq, record_id, kind, created_at, body, deduction_id, person_ref, program, period,
                amount_fen, reverses, status, received_at, reject_reason FROM record;
            DROP TABLE record;
            ALTER TABLE record_new RENAME TO record;
            CREATE INDEX record_usage ON record(person_ref, program, period);
            CREATE INDEX record_status ON record(status, device_id, seq);
            CREATE UNIQUE INDEX record_reverses ON record(reverses) WHERE reverses IS NOT NULL;
            CREATE TRIGGER record_never_edited BEFORE UPDATE OF device_id, seq, record_id, kind, created_at, body, amount_fen ON record
                BEGIN SELECT RAISE(ABORT, 'settlement records are never edited'); END;
            CREATE TRIGGER record_kept_until_acknowledged BEFORE DELETE ON record WHEN OLD.status != 'accepted'
                BEGIN SELECT RAISE(ABORT, 'unacknowledged settlement records are never deleted'); END;
            """)
    }
}

extension KioskStore {
    /// Every row of a cached statement, each decoded while the statement holds it. A copied
    /// row (`Row.fetchOne`, `Row.fetchAll`) finds a column by lowercasing every column name
    /// on each lookup; a row read in place looks it up in the statement's table. Issue 24
    /// item 4: that lowercasing was 6 % of a decision + commit's instructions.
    static func rows<T>(_ db: Database, _ sql: String, _ arguments: StatementArguments = StatementArguments(),
                        _ decode: (Row) throws -> T) throws -> [T] {
        let cursor = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        var out: [T] = []
        while let row = try cursor.next() { out.append(try decode(row)) }
        return out
    }

    /// The first row of a cached statement, decoded in place (see `rows`); nil when none.
    static func row<T>(_ db: Database, _ sql: String, _ arguments: StatementArguments = StatementArguments(),
                       _ decode: (Row) throws -> T) throws -> T? {
        let cursor = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        return try withExtendedLifetime(cursor) { try cursor.next().map(decode) }
    }
}

/// What a decision needs of the installed snapshot's header, read by position (issue 24
/// item 4: the whole header, decoded by name, cost a view and a begin 37,000 instructions each).
struct InstalledBrief {
    var snapshotID: String
    var expiresAt: String
    var settledThrough: String

    /// The installed snapshot's brief; nil when none is installed.
    static func read(_ db: Database) throws -> InstalledBrief? {
        try KioskStore.row(db, "SELECT snapshot_id, expires_at, settled_through FROM snapshot_meta WHERE id = 1") {
            InstalledBrief(snapshotID: $0[0], expiresAt: $0[1], settledThrough: $0[2])
        }
    }
}
