import Foundation
import KioskProtocol
import Synchronization
import GRDB
import GRDBSQLite

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
    /// - `deduction_bill` keys on a new `voided` column (kept to `state` by triggers) instead of
    ///   `state`: a commit changes `state`, which made SQLite rewrite the bill index's entry;
    ///   `voided` only changes when a deduction is voided.
    /// - `record.reverses` loses its `UNIQUE` (an index entry for every record, reversal or
    ///   not) for a partial unique index over the reversals alone.
    ///
    /// The tables are rebuilt in place from their own stored definitions, changed only where
    /// named (the copy keeps every row and rowid); their other indexes and triggers are made
    /// again from their stored text.
    static func migrateLedgerPages(_ db: Database) throws {
        try rebuild(db, table: "deduction", changes: [
            ("id INTEGER PRIMARY KEY AUTOINCREMENT,", "id INTEGER PRIMARY KEY,"),
            ("resolved_at TEXT, resolution TEXT,", "resolved_at TEXT, resolution TEXT,\n    voided INTEGER NOT NULL DEFAULT 0,"),
        ], dropping: ["deduction_state", "deduction_bill"], copyRowid: false, derived: [("voided", "state = 'voided'")])
        // `voided` follows `state` by triggers rather than a CHECK, so that a kioskd of an
        // earlier release (a package rolled back), which voids by setting `state` alone,
        // still voids: the trigger sets `voided` for it. Nothing may set `voided` otherwise.
        try db.execute(sql: """
            CREATE INDEX deduction_pending ON deduction(card_number) WHERE state = 'pending';
            CREATE UNIQUE INDEX deduction_bill ON deduction(bill_reference) WHERE voided = 0;
            CREATE TRIGGER deduction_voided_follows_state AFTER UPDATE OF state ON deduction WHEN NEW.state = 'voided' AND NEW.voided = 0
                BEGIN UPDATE deduction SET voided = 1 WHERE id = NEW.id; END;
            CREATE TRIGGER deduction_voided_only_with_state BEFORE UPDATE OF voided ON deduction WHEN NEW.voided != (NEW.state = 'voided')
                BEGIN SELECT RAISE(ABORT, 'a deduction is voided when its state is voided, and only then'); END;
            CREATE TRIGGER deduction_inserted_voided_with_state BEFORE INSERT ON deduction WHEN NEW.voided != (NEW.state = 'voided')
                BEGIN SELECT RAISE(ABORT, 'a deduction is voided when its state is voided, and only then'); END;
            """)
        try rebuild(db, table: "record", changes: [("reverses TEXT UNIQUE,", "reverses TEXT,")], dropping: [], copyRowid: true)
        try db.execute(sql: "CREATE UNIQUE INDEX record_reverses ON record(reverses) WHERE reverses IS NOT NULL")
    }

    /// Issue 24 item 4: a `CHECK (c IN (…))` of three or more values makes SQLite build a
    /// temporary B-tree of the values every time a row is written (create it, fill it, search
    /// it, drop it: 130,000 instructions a decision + commit, 17 % of them, measured with
    /// callgrind). The same checks written as comparisons joined by `OR` are compiled inline.
    ///
    /// The values allowed are exactly the same, so no row needs to move or be checked again:
    /// SQLite's documented way for a change that leaves the stored content as it is ("Making
    /// Other Kinds Of Table Schema Changes", lang_altertable.html) edits the stored definition
    /// under `writable_schema` and raises the schema version, in one transaction. Each check is
    /// replaced only where found exactly as this store wrote it; a table that does not have it
    /// is refused, nothing changed.
    static func migrateChecksAsComparisons(_ db: Database) throws {
        let checks: [(table: String, column: String, values: [String])] = [
            ("deduction", "state", ["pending", "committed", "voided"]),
            ("record", "kind", ["medical_subsidy", "subsidy_reversal", "legal_aid_application", "alert"]),
            ("record", "status", ["queued", "accepted", "rejected"]),
            ("bill_outcome", "status", ["waiting", "confirming", "granted", "refused", "cancelled", "pending"]),
        ]
        var tables: [String: String] = [:]
        for check in checks {
            let table = check.table
            guard let sql = try tables[table] ?? String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", arguments: [table]) else {
                throw StoreError(kind: .corrupt, message: "the store has no \(table) table this version knows")
            }
            let quoted = check.values.map { "'\($0)'" }
            let forms = [quoted.joined(separator: ", "), quoted.joined(separator: ",")].map { "CHECK (\(check.column) IN (\($0)))" }
            guard let form = forms.first(where: sql.contains) else {
                throw StoreError(kind: .corrupt, message: "the \(table) table is not the one this version knows (no check of \(check.column))")
            }
            tables[table] = sql.replacingOccurrences(of: form, with: "CHECK (" + quoted.map { "\(check.column) = \($0)" }.joined(separator: " OR ") + ")")
        }
        let version = try Int.fetchOne(db, sql: "PRAGMA schema_version") ?? 0
        try db.execute(sql: "PRAGMA writable_schema = ON")
        defer { try? db.execute(sql: "PRAGMA writable_schema = OFF") }
        // A SQLite built or configured defensive ignores it: the checks then stay as they are
        // (right, only slower), rather than a store that no longer opens.
        guard try Bool.fetchOne(db, sql: "PRAGMA writable_schema") == true else { return }
        for (table, sql) in tables.sorted(by: { $0.key < $1.key }) {
            try db.execute(sql: "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?", arguments: [sql, table])
        }
        // The raised schema version makes every connection read the schema again.
        try db.execute(sql: "PRAGMA schema_version = \(version + 1)")
        db.clearSchemaCache()
    }

    /// SQLite's way to change a table (create the new one, copy, drop, rename): the new
    /// table's text is the stored one with `changes` made (each must be found: a table that is
    /// not the one this migration knows is refused, nothing changed). The indexes and
    /// triggers of the old table are made again, but those in `dropping`; `copyRowid` keeps the
    /// rowids of a table without an `INTEGER PRIMARY KEY` (one with it keeps them as that column);
    /// `derived` fills each new column from an expression over the old row.
    private static func rebuild(_ db: Database, table: String, changes: [(String, String)], dropping: Set<String>,
                                copyRowid: Bool, derived: [(column: String, expression: String)] = []) throws {
        // As first made, or as SQLite writes it after a rename (the name quoted).
        let heads = ["CREATE TABLE \(table) (", "CREATE TABLE \"\(table)\" ("]
        guard var sql = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", arguments: [table]),
              let head = heads.first(where: { sql.hasPrefix($0) }) else {
            throw StoreError(kind: .corrupt, message: "the store has no \(table) table this version knows")
        }
        sql = "CREATE TABLE \(table)_new (" + sql.dropFirst(head.count)
        for (old, new) in changes {
            guard sql.contains(old) else { throw StoreError(kind: .corrupt, message: "the \(table) table is not the one this version knows (no \(old))") }
            sql = sql.replacingOccurrences(of: old, with: new)
        }
        let others = try Row.fetchAll(db, sql: "SELECT name, sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL",
                                      arguments: [table]).filter { !dropping.contains($0[0] as String) }.map { $0[1] as String }
        let columns = (copyRowid ? ["rowid"] : []) + (try db.columns(in: table).map(\.name))
        let into = (columns + derived.map(\.column)).joined(separator: ", ")
        let from = (columns + derived.map(\.expression)).joined(separator: ", ")
        try db.execute(sql: sql)
        try db.execute(sql: "INSERT INTO \(table)_new (\(into)) SELECT \(from) FROM \(table)")
        try db.execute(sql: "DROP TABLE \(table)")
        try db.execute(sql: "ALTER TABLE \(table)_new RENAME TO \(table)")
        for other in others { try db.execute(sql: other) }
    }
}

extension KioskStore {
    /// Every row of a cached statement, each decoded in place (`StoreRow`, issue 24 item 4).
    static func rows<T>(_ db: Database, _ sql: String, _ arguments: [any StoreBindable] = [],
                        _ decode: (StoreRow) throws -> T) throws -> [T] {
        var out: [T] = []
        try each(db, sql, arguments) { out.append(try decode($0)); return true }
        return out
    }

    /// The first row of a cached statement, decoded in place; nil when none.
    static func row<T>(_ db: Database, _ sql: String, _ arguments: [any StoreBindable] = [],
                       _ decode: (StoreRow) throws -> T) throws -> T? {
        var out: T?
        try each(db, sql, arguments) { out = try decode($0); return false }
        return out
    }

    /// A cached statement that returns no row (an insert, an update), run to its end.
    static func run(_ db: Database, _ sql: String, _ arguments: [any StoreBindable]) throws {
        try each(db, sql, arguments) { _ in true }
    }

    /// Binds the arguments (exactly as many as the statement's parameters) and steps the
    /// statement while `body` returns true; the statement is reset afterwards, whatever happened.
    /// The `Statement` is held for the whole run: GRDB's cache is not the only owner of the
    /// SQLite statement while it steps (a schema change clears that cache).
    static func each(_ db: Database, _ sql: String, _ arguments: [any StoreBindable], _ body: (StoreRow) throws -> Bool) throws {
        let statement = try db.cachedStatement(sql: sql)
        try withExtendedLifetime(statement) { try step(statement.sqliteStatement, sql, arguments, body) }
    }

    /// The error SQLite just gave on `handle`'s connection (its extended code and message).
    /// Taken before the statement is reset.
    static func sqliteFailure(_ handle: SQLiteStatement, sql: String) -> DatabaseError {
        sqliteFailure(connection: sqlite3_db_handle(handle), sql: sql)
    }

    /// The error SQLite just gave on `connection` (its extended code and message).
    static func sqliteFailure(connection: OpaquePointer?, sql: String? = nil) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: sqlite3_extended_errcode(connection)),
                      message: String(cString: sqlite3_errmsg(connection)), sql: sql)
    }

    private static func step(_ handle: SQLiteStatement, _ sql: String, _ arguments: [any StoreBindable],
                             _ body: (StoreRow) throws -> Bool) throws {
        sqlite3_reset(handle)
        defer { sqlite3_reset(handle) }
        guard sqlite3_bind_parameter_count(handle) == arguments.count else {
            throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "\(arguments.count) arguments for \(sqlite3_bind_parameter_count(handle)) parameters", sql: sql)
        }
        for (i, value) in arguments.enumerated() {
            let code = value.bind(handle, CInt(i + 1))
            guard code == SQLITE_OK else { throw sqliteFailure(handle, sql: sql) }
        }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else { throw sqliteFailure(handle, sql: sql) }
            guard try body(StoreRow(handle: handle)) else { return }
        }
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
            InstalledBrief(snapshotID: try $0[0], expiresAt: try $0[1], settledThrough: try $0[2])
        }
    }
}

/// Programs decoded from the snapshot's JSON, once per exact text (issue 11: decoding it was
/// 14 % of a decision's instructions). Looked up by the program's code and kept with the text's
/// bytes, which must be equal byte for byte (`String` equality would take two texts that differ
/// only in Unicode normalisation for one; hashing the whole text cost 9,000 instructions a
/// lookup, issue 24 item 4). A changed program is decoded anew, so nothing needs invalidating
/// when a snapshot is installed. A handful of programs per region; bounded all the same.
enum ProgramCache {
    private struct Entry { var text: [UInt8]; var program: Program }
    private static let cache = Mutex<[String: Entry]>([:])

    static func decode(code: String, json: String) -> Program? {
        var json = json
        let hit = json.withUTF8 { text in
            cache.withLock { entries -> Program? in
                guard let entry = entries[code], entry.text.count == text.count else { return nil }
                let same = text.isEmpty || entry.text.withUnsafeBufferPointer { memcmp($0.baseAddress!, text.baseAddress!, text.count) == 0 }
                return same ? entry.program : nil
            }
        }
        if let hit { return hit }
        let text = Array(json.utf8)
        guard let program = try? JSONDecoder().decode(Program.self, from: Data(text)) else { return nil }
        cache.withLock {
            if $0.count >= 256 { $0.removeAll() }
            $0[code] = Entry(text: text, program: program)
        }
        return program
    }
}
