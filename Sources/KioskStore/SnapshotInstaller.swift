import Crypto
import KioskProtocol
import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// What an install put live.
public struct InstallReport: Sendable, Equatable {
    /// The installed snapshot's header.
    public var header: SnapshotHeader
    /// The records between the file's header and trailer, ignored ones included.
    public var records: Int
    /// Records of unknown types, counted and ignored (snapshot spec §1).
    public var ignoredRecords: Int
}

extension KioskStore {
    /// Rows of one table per copy transaction of a full install, unless the installer says
    /// otherwise: 20,000 copy in at most about 90 ms here (issue 24).
    public static let defaultRowsPerRange = 20_000

    /// Installs a snapshot whole or not at all (snapshot spec §2): streamed from the file,
    /// applied inside one write transaction, verified at the trailer, committed only when
    /// everything holds. On refusal the installed snapshot stays exactly as it was.
    ///
    /// A `full` snapshot's person, card and usage lines are appended in file order to a
    /// staging file beside the store (its own connection: nothing of the store is held),
    /// indexed by key there, and copied range by range in key order into the generation that
    /// is not live (the last line of a key wins, as `INSERT OR REPLACE` in file order would);
    /// once the trailer verified, one short transaction makes that generation live. Inserting
    /// in key order appends to the B-trees instead of touching a random page per row. A
    /// refusal leaves the live generation as it was; the staging file is removed either way.
    ///
    /// Every record is held to snapshot spec v2 §1 "Rules" as it streams by (a breach is
    /// `bad_record` naming the line; a line over 64 KiB is refused while it is read, before it
    /// is held whole). A snapshot issued more than 10 minutes after `now` (the kiosk's clock)
    /// is refused `issued_in_future`; an installed one raises the clock floor (sync spec §6)
    /// to its `issued_at`, in the same transaction.
    ///
    /// - Parameter pauseBetweenRanges: how long the copy leaves the store's writer free after
    ///   each range. Zero when the installer is the store's only writing process (kioskd's
    ///   sync: its writes queue in order behind one range at most). Another process (kioskd,
    ///   while `kioskctl snapshot install` runs) waits in SQLite's busy handler, which sleeps
    ///   up to 100 ms between tries and so never saw the few microseconds between two ranges:
    ///   it starved for the whole copy, seconds (issue 24). A pause longer than that sleep
    ///   lets it in after one range.
    /// - Parameter rowsPerRange: rows of one table per copy transaction: what a commit waits
    ///   for at most. kioskd's own sync passes fewer (a 确认 makes several writes in turn, and
    ///   each waits for the range under way: issue 24 item 3).
    public func installSnapshot(at url: URL, trustedAuthorities: [String: Curve25519.Signing.PublicKey], now: Date,
                                pauseBetweenRanges: Duration = .zero, rowsPerRange: Int = KioskStore.defaultRowsPerRange) throws -> InstallReport {
        precondition(rowsPerRange > 0, "a range holds rows")
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw SnapshotRefusal.unreadableFile(error.localizedDescription)
        }
        defer { try? handle.close() }
        do {
            var loader = SnapshotLoader(reader: LineReader(handle: handle), authorities: trustedAuthorities, now: now)
            let header = try loader.readHeader()
            let installed = try pool.read { db in try SnapshotLoader.installed(db) }
            try SnapshotLoader.checkAgainstInstalled(header, installed?.header)
            let issuedAt = Timestamp.date(header.issuedAt)!
            guard issuedAt <= now.addingTimeInterval(ClockFloor.tolerance) else {
                throw SnapshotRefusal.issuedInFuture(issuedAt: header.issuedAt, now: Timestamp.string(now))
            }
            if header.kind == "delta" {
                // A delta is small: applied to the live tables in one transaction.
                return try pool.write { db in
                    try SnapshotLoader.expectInstalled(db, installed?.header.snapshotID)
                    var statements = try SnapshotLoader.Statements(db, generation: try SnapshotLoader.Generation.live(db))
                    try loader.stream(into: &statements, delta: true) { _ in }
                    return try loader.finish(db, header: header, installed: installed, full: false)
                }
            }
            // A full fills the tables that are not live, in short transactions (a card commit
            // waits one batch at most, a reader not at all), then one short transaction checks
            // that nothing else installed meanwhile and makes them live.
            //
            // Issue 11: the rows are first appended, unsorted, to a staging file beside the
            // store, on a connection of its own (nothing of the store is locked meanwhile:
            // not the writer, not its connection), indexed by key there, then copied in key
            // order, range by range, each range one short transaction on the store's writer
            // that appends at the end of the inactive tables' B-trees. Filling those trees in
            // random order rewrote most of their pages at every batch (50 s for 1,000,000
            // persons); staging on the writer's own connection held it for seconds.
            let (target, token) = try pool.write { db in try SnapshotLoader.Generation.prepareInactive(db) }
            var batch = SnapshotLoader.GenerationBatch(target: target, token: token)
            batch.rowsPerRange = rowsPerRange
            let stagingPath = path + ".staging-" + token.prefix(8)
            defer { for suffix in ["", "-journal"] { try? FileManager.default.removeItem(atPath: stagingPath + suffix) } }
            let ranges = try SnapshotLoader.GenerationBatch.staged(at: stagingPath, &batch) { batch, flush in
                try loader.stream(into: &batch, delta: false) { batch in
                    if batch.pendingRows >= SnapshotLoader.GenerationBatch.rowsPerTransaction { try flush(&batch) }
                }
            }
            try pool.writeWithoutTransaction { db in try db.execute(sql: "ATTACH DATABASE ? AS staging", arguments: [stagingPath]) }
            defer { try? pool.writeWithoutTransaction { db in try db.execute(sql: "DETACH DATABASE staging") } }
            for range in ranges {
                try pool.write { db in try batch.copy(db, range) }
                if pauseBetweenRanges > .zero { Thread.sleep(forTimeInterval: Double(pauseBetweenRanges.components.seconds) + Double(pauseBetweenRanges.components.attoseconds) / 1e18) }
            }
            return try pool.write { db in
                try SnapshotLoader.expectInstalled(db, installed?.header.snapshotID)
                try batch.writeProgramsAndDevices(db)
                try SnapshotLoader.Generation.makeLive(db, target)
                return try loader.finish(db, header: header, installed: installed, full: true)
            }
        } catch let r as SnapshotRefusal {
            throw r
        } catch let e as DatabaseError {
            throw SnapshotRefusal.storage(StoreError(e).message)
        } catch let e as StoreError {
            throw SnapshotRefusal.storage(e.message)
        } catch {
            throw SnapshotRefusal.unreadableFile("\(error)")   // a read that failed part-way
        }
    }

    /// The installed snapshot's header, or nil.
    public func installedSnapshot() throws -> (header: SnapshotHeader, installedAt: String, records: Int, ignored: Int)? {
        try pool.read { db in try SnapshotLoader.installed(db) }
    }
}

/// The install's storage side of `SnapshotLoader`: the installed snapshot's row, the two
/// generations of the tables and the sinks that fill them.
extension SnapshotLoader {
    /// Another install finished since this one began: refused, nothing of it applied.
    static func expectInstalled(_ db: Database, _ id: String?) throws {
        guard try installed(db)?.header.snapshotID == id else {
            throw StoreError(kind: .other, message: "another snapshot was installed meanwhile; sync again")
        }
    }

    static func installed(_ db: Database) throws -> (header: SnapshotHeader, installedAt: String, records: Int, ignored: Int)? {
        try KioskStore.row(db, "SELECT * FROM snapshot_meta WHERE id = 1") { r in
            let h = SnapshotHeader(snapshotID: try r["snapshot_id"], kind: try r["kind"], baseSnapshotID: nil, region: try r["region"],
                                   issuedAt: try r["issued_at"], expiresAt: try r["expires_at"], settledThrough: try r["settled_through"],
                                   authorityKeyID: try r["authority_key_id"])
            return (h, try r["installed_at"], try r["records"], try r["ignored_records"])
        }
    }


    /// The header becomes the installed snapshot's, and the clock floor learns its `issued_at`.
    func finish(_ db: Database, header: SnapshotHeader, installed: (header: SnapshotHeader, installedAt: String, records: Int, ignored: Int)?,
                full: Bool) throws -> InstallReport {
        try db.execute(sql: """
            INSERT OR REPLACE INTO snapshot_meta (id, snapshot_id, kind, region, issued_at, expires_at, settled_through,
                authority_key_id, installed_at, records, ignored_records)
            VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [header.snapshotID, header.kind, header.region, header.issuedAt, header.expiresAt,
                             header.settledThrough, header.authorityKeyID, Timestamp.string(now),
                             full ? records : records + (installed?.records ?? 0), ignored])
        // Sync spec §6: the clock floor learns the installed snapshot's issued_at.
        try KioskStore.raiseClockFloor(db, to: Timestamp.date(header.issuedAt)!)
        return InstallReport(header: header, records: records, ignoredRecords: ignored)
    }

    /// Two generations of the person, card and usage tables (`person_0` / `person_1`, …);
    /// the views `person`, `card` and `usage` show the live one. A full install fills the
    /// other and switches the views in one short transaction.
    enum Generation {
        static let tables: [(name: String, columns: String)] = [
            ("person", "person_ref TEXT PRIMARY KEY, status TEXT NOT NULL, status_reason TEXT NOT NULL, programs TEXT NOT NULL"),
            ("card", "card_number TEXT PRIMARY KEY, person_ref TEXT NOT NULL, status TEXT NOT NULL"),
            ("usage", "person_ref TEXT NOT NULL, program TEXT NOT NULL, period TEXT NOT NULL, used_fen INTEGER NOT NULL, PRIMARY KEY (person_ref, program, period)"),
        ]

        static func live(_ db: Database) throws -> Int {
            try Int.fetchOne(db, sql: "SELECT live FROM snapshot_generation WHERE id = 1") ?? 0
        }

        /// Empties the generation that is not live (what a refused or interrupted install left
        /// there goes), and claims it for this install with a fresh token: an install that
        /// claimed it before stops at its next batch.
        static func prepareInactive(_ db: Database) throws -> (target: Int, token: String) {
            let target = 1 - (try live(db))
            for t in tables {
                try db.execute(sql: "DROP TABLE IF EXISTS \(t.name)_\(target)")
                try db.execute(sql: "CREATE TABLE \(t.name)_\(target) (\(t.columns)) WITHOUT ROWID")
            }
            let token = UUID().uuidString
            try db.execute(sql: "UPDATE snapshot_generation SET staging_token = ? WHERE id = 1", arguments: [token])
            return (target, token)
        }

        static func expectClaim(_ db: Database, _ token: String) throws {
            guard try String.fetchOne(db, sql: "SELECT staging_token FROM snapshot_generation WHERE id = 1") == token else {
                throw StoreError(kind: .other, message: "another snapshot install took over; sync again")
            }
        }

        static func makeLive(_ db: Database, _ target: Int) throws {
            for t in tables {
                try db.execute(sql: "DROP VIEW IF EXISTS \(t.name)")
                try db.execute(sql: "CREATE VIEW \(t.name) AS SELECT * FROM \(t.name)_\(target)")
            }
            try db.execute(sql: "UPDATE snapshot_generation SET live = ?, staging_token = NULL WHERE id = 1", arguments: [target])
        }

        /// The migration: the tables of contract v2 become generation 0, behind the views.
        static func migrate(_ db: Database) throws {
            try db.execute(sql: "CREATE TABLE snapshot_generation (id INTEGER PRIMARY KEY CHECK (id = 1), live INTEGER NOT NULL, staging_token TEXT)")
            try db.execute(sql: "INSERT INTO snapshot_generation (id, live) VALUES (1, 0)")
            for t in tables {
                try db.execute(sql: "ALTER TABLE \(t.name) RENAME TO \(t.name)_0")
                try db.execute(sql: "CREATE TABLE \(t.name)_1 (\(t.columns)) WITHOUT ROWID")
                try db.execute(sql: "CREATE VIEW \(t.name) AS SELECT * FROM \(t.name)_0")
            }
        }
    }

    /// The first error of the staging writer's thread, for the thread that fills it.
    final class FirstFailure: Sendable {
        private let box = Mutex<(any Error)?>(nil)
        var error: (any Error)? { box.withLock { $0 } }
        func record(_ e: any Error) { box.withLock { if $0 == nil { $0 = e } } }
    }

    /// One flush's rows of a full install, on their way to the staging writer.
    struct StagedRows: Sendable {
        var persons: [(String, String, String, String)]
        var cards: [(String, String, String)]
        var usages: [(String, String, String, Int)]
    }

    /// A full install's rows on their way into the generation that is not live: held until
    /// `rowsPerTransaction`, appended to a staging file of this install on a connection of
    /// its own, then copied into the inactive tables in key order, range by range.
    struct GenerationBatch: SnapshotSink {
        static let rowsPerTransaction = 50_000
        let target: Int
        let token: String
        /// Rows of one table per copy transaction (a commit waits for one range at most):
        /// 20,000 copy in at most about 90 ms here, so 确认's two transactions wait under
        /// 200 ms in all during a 1,000,000-person install (issue 24; 50,000 took up to 215 ms).
        var rowsPerRange = KioskStore.defaultRowsPerRange
        var persons: [(String, String, String, String)] = []
        var cards: [(String, String, String)] = []
        var usages: [(String, String, String, Int)] = []
        /// Few: kept whole and written when the install is made live.
        var programs: [(String, String)] = []
        var devices: [(String, String, String, String)] = []

        init(target: Int, token: String) { self.target = target; self.token = token }

        var pendingRows: Int { persons.count + cards.count + usages.count }

        mutating func person(_ a: String, _ b: String, _ c: String, _ d: String) throws { persons.append((a, b, c, d)) }
        mutating func card(_ a: String, _ b: String, _ c: String) throws { cards.append((a, b, c)) }
        mutating func usage(_ a: String, _ b: String, _ c: String, _ d: Int) throws { usages.append((a, b, c, d)) }
        mutating func program(_ code: String, _ json: String) throws { programs.append((code, json)) }
        mutating func device(_ a: String, _ b: String, _ c: String, _ d: String) throws { devices.append((a, b, c, d)) }
        mutating func delete(_ type: String, _ key: [String]) throws {}   // a full deletes nothing

        /// Fills a fresh staging file at `path` on a connection of its own: `fill` streams
        /// the records into the batch and calls `flush` whenever it holds enough rows. Then
        /// indexes the staged rows by key and returns the copy ranges; the file stays for
        /// the copy (attached to the store's writer as `staging`).
        ///
        /// Issue 11: the staging inserts run on a thread of their own while `fill` reads,
        /// hashes and parses the next rows (parsing the JSON was half of a full install, and
        /// the other core sat idle). At most `inFlight` batches wait for the writer, so memory
        /// stays flat whatever the snapshot's size. A failed insert (a full disk) stops the
        /// next flush and is thrown; the writer has always finished before this returns.
        static func staged(at path: String, _ batch: inout GenerationBatch,
                           fill: (inout GenerationBatch, (inout GenerationBatch) throws -> Void) throws -> Void) throws -> [Range] {
            for suffix in ["", "-journal"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            var config = Configuration()
            config.prepareDatabase { db in
                // A scratch file: rebuilt from the snapshot whenever an install starts again.
                try db.execute(sql: "PRAGMA journal_mode = OFF")
                try db.execute(sql: "PRAGMA synchronous = OFF")
            }
            let queue = try DatabaseQueue(path: path, configuration: config)
            defer { try? queue.close() }
            let tables = batch
            try queue.inDatabase { db in try tables.createStaging(db) }
            let writer = DispatchQueue(label: "snapshot.staging")
            let slots = DispatchSemaphore(value: inFlight)
            let failure = FirstFailure()
            // Declared after the queue's close: runs before it, on every way out.
            defer { writer.sync {} }
            let flush: (inout GenerationBatch) throws -> Void = { b in
                if let e = failure.error { throw e }
                let rows = b.takeRows()
                slots.wait()
                writer.async {
                    defer { slots.signal() }
                    guard failure.error == nil else { return }
                    do { try queue.inDatabase { db in try db.inTransaction { try tables.stage(db, rows); return .commit } } } catch {
                        failure.record(error)
                    }
                }
            }
            try fill(&batch, flush)
            try flush(&batch)
            writer.sync {}
            if let e = failure.error { throw e }
            return try queue.inDatabase { db in try tables.indexStaging(db) }
        }

        /// Batches handed to the staging writer and not yet written, at most.
        static let inFlight = 2

        /// The rows held so far, for the staging writer; the batch keeps none.
        mutating func takeRows() -> StagedRows {
            defer { persons = []; cards = []; usages = [] }
            return StagedRows(persons: persons, cards: cards, usages: usages)
        }

        /// The staging table of `table`: in the staging file, or (`attached`) as the store's writer sees it.
        func staging(_ table: String, attached: Bool = false) -> String { (attached ? "staging." : "") + "stage_\(table)" }

        /// Each staged table: its name, key columns, and every column in the generation's order.
        static let layout: [(table: String, key: [String], columns: [String])] = [
            ("person", ["person_ref"], ["person_ref", "status", "status_reason", "programs"]),
            ("card", ["card_number"], ["card_number", "person_ref", "status"]),
            ("usage", ["person_ref", "program", "period"], ["person_ref", "program", "period", "used_fen"]),
        ]

        func createStaging(_ db: Database) throws {
            for t in Self.layout {
                try db.execute(sql: "DROP TABLE IF EXISTS \(staging(t.table))")
                try db.execute(sql: "CREATE TABLE \(staging(t.table)) (\(t.columns.joined(separator: ", ")))")
            }
        }

        /// Rows appended in file order (a later line of the same key wins at the copy).
        func stage(_ db: Database, _ rows: StagedRows) throws {
            let person = RowInsert(statement: try db.cachedStatement(sql: "INSERT INTO \(staging("person")) VALUES (?, ?, ?, ?)"), throughGRDB: false)
            let card = RowInsert(statement: try db.cachedStatement(sql: "INSERT INTO \(staging("card")) VALUES (?, ?, ?)"), throughGRDB: false)
            let usage = RowInsert(statement: try db.cachedStatement(sql: "INSERT INTO \(staging("usage")) VALUES (?, ?, ?, ?)"), throughGRDB: false)
            for r in rows.persons { try person(r.0, r.1, r.2, r.3) }
            for r in rows.cards { try card(r.0, r.1, r.2) }
            for r in rows.usages { try usage(r.0, r.1, r.2, r.3) }
        }

        /// One key range of one table: rows with key > `after` (nil: from the first) and
        /// key ≤ `through` (nil: to the last).
        struct Range { var table: Int; var after: [DatabaseValue]?; var through: [DatabaseValue]? }

        /// Indexes the staged rows by key (a sort in the staging file, no lock on the store) and cuts them
        /// into ranges of about `rowsPerRange` rows; every row of one key falls in one range.
        func indexStaging(_ db: Database) throws -> [Range] {
            var ranges: [Range] = []
            for (i, t) in Self.layout.enumerated() {
                let name = staging(t.table)
                let keys = t.key.joined(separator: ", ")
                try db.execute(sql: "CREATE INDEX \(name)_key ON \(name)(\(keys))")
                var previous: [DatabaseValue]?
                var n = 0
                let cursor = try Row.fetchCursor(db, sql: "SELECT \(keys) FROM \(name) ORDER BY \(keys)")
                var last: [DatabaseValue]?
                while let row = try cursor.next() {
                    n += 1
                    let key = Array(row.databaseValues)
                    // A cut after the row that fills a range, unless the next row has the same key.
                    if let l = last, n > rowsPerRange, l != key {
                        ranges.append(Range(table: i, after: previous, through: l))
                        previous = l
                        n = 1
                    }
                    last = key
                }
                if last != nil { ranges.append(Range(table: i, after: previous, through: nil)) }
            }
            return ranges
        }

        /// Copies one range into the inactive generation, in key order and, within a key, in
        /// file order (so the last line of a key wins, as `OR REPLACE` in file order would).
        func copy(_ db: Database, _ range: Range) throws {
            try Generation.expectClaim(db, token)
            let t = Self.layout[range.table]
            let keys = "(" + t.key.joined(separator: ", ") + ")"
            let marks = "(" + t.key.map { _ in "?" }.joined(separator: ", ") + ")"
            var conditions: [String] = []
            var arguments: [DatabaseValue] = []
            if let after = range.after { conditions.append("\(keys) > \(marks)"); arguments += after }
            if let through = range.through { conditions.append("\(keys) <= \(marks)"); arguments += through }
            let columns = t.columns.joined(separator: ", ")
            try db.execute(sql: """
                INSERT OR REPLACE INTO \(t.table)_\(target) (\(columns)) SELECT \(columns) FROM \(staging(t.table, attached: true))
                \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")) ORDER BY \(t.key.joined(separator: ", ")), rowid
                """, arguments: StatementArguments(arguments))
        }

        func writeProgramsAndDevices(_ db: Database) throws {
            try db.execute(sql: "DELETE FROM program")
            try db.execute(sql: "DELETE FROM device")
            for (code, json) in programs { try db.execute(sql: "INSERT OR REPLACE INTO program (code, json) VALUES (?, ?)", arguments: [code, json]) }
            for (a, b, c, d) in devices {
                try db.execute(sql: "INSERT OR REPLACE INTO device (device_id, public_key, institution, status) VALUES (?, ?, ?, ?)", arguments: [a, b, c, d])
            }
        }
    }

    /// An insert of person, card or usage rows. Into the live tables (a delta) it runs through
    /// GRDB like every other write. Into the staging file's tables (a full snapshot: millions of
    /// rows, which nothing observes) it binds and steps with the SQLite C API: GRDB's
    /// per-execution bookkeeping cost more than SQLite's own append.
    struct RowInsert {
        let statement: Statement
        /// True for the live tables (a delta): through GRDB; false for the staging file: the C API.
        let throughGRDB: Bool

        func callAsFunction(_ a: String, _ b: String, _ c: String, _ d: String) throws {
            guard throughGRDB else { bind(1, a); bind(2, b); bind(3, c); bind(4, d); return try step() }
            try statement.execute(arguments: [a, b, c, d])
        }
        func callAsFunction(_ a: String, _ b: String, _ c: String) throws {
            guard throughGRDB else { bind(1, a); bind(2, b); bind(3, c); return try step() }
            try statement.execute(arguments: [a, b, c])
        }
        func callAsFunction(_ a: String, _ b: String, _ c: String, _ d: Int) throws {
            guard throughGRDB else { bind(1, a); bind(2, b); bind(3, c); sqlite3_bind_int64(statement.sqliteStatement, 4, Int64(d)); return try step() }
            try statement.execute(arguments: [a, b, c, d])
        }

        /// Text, copied by SQLite (`StoreBindable`).
        private func bind(_ index: CInt, _ value: String) { _ = value.bind(statement.sqliteStatement, index) }

        private func step() throws {
            let handle = statement.sqliteStatement
            defer { sqlite3_reset(handle) }
            guard sqlite3_step(handle) == SQLITE_DONE else { throw KioskStore.sqliteFailure(handle, sql: statement.sql) }
        }
    }

    /// A delta's statements, on the live generation's tables.
    struct Statements: SnapshotSink {
        let person, card, usage: RowInsert
        let programInsert, deviceInsert: Statement
        let delPerson, delCard, delUsage, delProgram, delDevice: Statement
        init(_ db: Database, generation g: Int) throws {
            person = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO person_\(g) (person_ref, status, status_reason, programs) VALUES (?, ?, ?, ?)"), throughGRDB: true)
            card = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO card_\(g) (card_number, person_ref, status) VALUES (?, ?, ?)"), throughGRDB: true)
            usage = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO usage_\(g) (person_ref, program, period, used_fen) VALUES (?, ?, ?, ?)"), throughGRDB: true)
            programInsert = try db.makeStatement(sql: "INSERT OR REPLACE INTO program (code, json) VALUES (?, ?)")
            deviceInsert = try db.makeStatement(sql: "INSERT OR REPLACE INTO device (device_id, public_key, institution, status) VALUES (?, ?, ?, ?)")
            delPerson = try db.makeStatement(sql: "DELETE FROM person_\(g) WHERE person_ref = ?")
            delCard = try db.makeStatement(sql: "DELETE FROM card_\(g) WHERE card_number = ?")
            delUsage = try db.makeStatement(sql: "DELETE FROM usage_\(g) WHERE person_ref = ? AND program = ? AND period = ?")
            delProgram = try db.makeStatement(sql: "DELETE FROM program WHERE code = ?")
            delDevice = try db.makeStatement(sql: "DELETE FROM device WHERE device_id = ?")
        }
        mutating func person(_ a: String, _ b: String, _ c: String, _ d: String) throws { try person.callAsFunction(a, b, c, d) }
        mutating func card(_ a: String, _ b: String, _ c: String) throws { try card.callAsFunction(a, b, c) }
        mutating func usage(_ a: String, _ b: String, _ c: String, _ d: Int) throws { try usage.callAsFunction(a, b, c, d) }
        mutating func program(_ code: String, _ json: String) throws { try programInsert.execute(arguments: [code, json]) }
        mutating func device(_ a: String, _ b: String, _ c: String, _ d: String) throws { try deviceInsert.execute(arguments: [a, b, c, d]) }
        mutating func delete(_ type: String, _ key: [String]) throws {
            switch type {
            case "person": try delPerson.execute(arguments: StatementArguments(key))
            case "card": try delCard.execute(arguments: StatementArguments(key))
            case "usage": try delUsage.execute(arguments: StatementArguments(key))
            case "program": try delProgram.execute(arguments: StatementArguments(key))
            default: try delDevice.execute(arguments: StatementArguments(key))
            }
        }
    }

}
