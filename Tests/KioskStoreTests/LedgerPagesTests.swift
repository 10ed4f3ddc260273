import Foundation
import GRDB
@testable import KioskStore
import Testing

/// Issue 24 item 4: the ledger's tables rebuilt for fewer pages per deduction. A kiosk that
/// already holds deductions and records keeps every row, id and rule across the rebuild.
@Suite struct LedgerPagesTests {
    static let deductionColumns = """
        id, device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge, card_ack,
        bill_reference, bill_fen, allocations, snapshot_id, institution, created_at, resolved_at, resolution
        """
    static let recordColumns = """
        rowid, device_id, seq, record_id, kind, created_at, body, deduction_id, person_ref, program, period, amount_fen, reverses,
        status, received_at, reject_reason
        """

    /// A store made by the migrations before this one, holding a committed, a voided and a
    /// pending deduction, their records (one reversed), a legal-aid contact and a receipt line.
    func oldStore() throws -> String {
        let path = Fixture.tempDir().appendingPathComponent("old.sqlite").path
        let pool = try DatabasePool(path: path)
        try KioskStore.migrator.migrate(pool, upTo: "legal-aid-contact")
        try pool.write { db in
            let ch = Data(repeating: 1, count: 16), ack = Data(repeating: 2, count: 64)
            for (state, bill, card) in [("committed", "B1", "C1"), ("voided", "B2", "C2"), ("pending", "B2", "C3")] {
                try db.execute(sql: """
                    INSERT INTO deduction (device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                        card_ack, bill_reference, bill_fen, allocations, snapshot_id, institution, created_at)
                    VALUES ('K-1', ?, ?, 'P', '2026', 1, x'7200', ?, ?, ?, 100, '[]', 'S', 'I', '2026-12-01T00:00:00Z')
                    """, arguments: [state, card, ch, state == "committed" ? ack : nil, bill])
            }
            for (seq, kind, reverses, dedu) in [(1, "medical_subsidy", nil, 1), (2, "subsidy_reversal", "K-1-1", nil), (3, "legal_aid_application", nil, nil)] as [(Int, String, String?, Int?)] {
                try db.execute(sql: """
                    INSERT INTO record (device_id, seq, record_id, kind, created_at, body, deduction_id, person_ref, program, period, amount_fen, reverses)
                    VALUES ('K-1', ?, ?, ?, '2026-12-01T00:00:00Z', '{}', ?, 'P', 'HM', '2026', 100, ?)
                    """, arguments: [seq, "K-1-\(seq)", kind, dedu, reverses])
            }
            try db.execute(sql: "UPDATE record SET status = 'accepted', received_at = '2026-12-02T00:00:00Z' WHERE seq = 1")
            try db.execute(sql: "INSERT INTO legal_aid_contact (record_id, phone) VALUES ('K-1-3', '13800000000')")
            try db.execute(sql: "INSERT INTO receipt_info (record_id, holder_masked) VALUES ('K-1-1', '张*')")
        }
        try pool.close()
        return path
    }

    func dump(_ pool: DatabasePool) throws -> ([Row], [Row]) {
        try pool.read { db in
            (try Row.fetchAll(db, sql: "SELECT \(Self.deductionColumns) FROM deduction ORDER BY id"),
             try Row.fetchAll(db, sql: "SELECT \(Self.recordColumns) FROM record ORDER BY rowid"))
        }
    }

    @Test func theRebuildKeepsEveryRowIdAndRule() throws {
        let path = try oldStore()
        let before = try { let p = try DatabasePool(path: path); defer { try? p.close() }; return try dump(p) }()
        let store = try KioskStore(path: path)
        let after = try dump(store.pool)
        #expect(before.0 == after.0 && before.1 == after.1 && after.0.count == 3 && after.1.count == 3)
        try store.pool.write { db in
            #expect(try Int.fetchAll(db, sql: "SELECT voided FROM deduction ORDER BY id") == [0, 1, 0])
            #expect(try Row.fetchAll(db, sql: "PRAGMA foreign_key_check").isEmpty)
            // A new deduction takes the next id; a live bill is refused twice; a voided one is free.
            let insert = """
                INSERT INTO deduction (device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                    bill_reference, bill_fen, allocations, snapshot_id, institution, created_at)
                VALUES ('K-1', 'pending', 'C9', 'P', '2026', 1, x'7200', zeroblob(16), ?, 100, '[]', 'S', 'I', '2026-12-01T00:00:00Z')
                """
            #expect(throws: DatabaseError.self) { try db.execute(sql: insert, arguments: ["B1"]) }
            #expect(throws: DatabaseError.self) { try db.execute(sql: insert, arguments: ["B2"]) }
            try db.execute(sql: "UPDATE deduction SET state = 'voided', voided = 1 WHERE id = 3")
            try db.execute(sql: insert, arguments: ["B2"])
            #expect(db.lastInsertedRowID == 4)
            // `voided` cannot disagree with `state`; a void by `state` alone (a kioskd of an
            // earlier release, rolled back) still voids, and frees the bill.
            #expect(throws: DatabaseError.self) { try db.execute(sql: "UPDATE deduction SET voided = 1 WHERE id = 4") }
            #expect(throws: DatabaseError.self) { try db.execute(sql: "UPDATE deduction SET voided = 0 WHERE id = 2") }
            #expect(throws: DatabaseError.self) {
                try db.execute(sql: insert.replacingOccurrences(of: "'pending'", with: "'voided'"), arguments: ["B7"])
            }
            try db.execute(sql: "UPDATE deduction SET state = 'voided' WHERE id = 4")
            #expect(try Int.fetchOne(db, sql: "SELECT voided FROM deduction WHERE id = 4") == 1)
            try db.execute(sql: insert, arguments: ["B2"])
            // A record is reversed once; records that reverse nothing are many.
            #expect(throws: DatabaseError.self) {
                try db.execute(sql: "INSERT INTO record (device_id, seq, record_id, kind, created_at, body, reverses) VALUES ('K-1', 9, 'K-1-9', 'subsidy_reversal', 'x', '{}', 'K-1-1')")
            }
            try db.execute(sql: "INSERT INTO record (device_id, seq, record_id, kind, created_at, body) VALUES ('K-1', 10, 'K-1-10', 'alert', 'x', '{}')")
            // The triggers are back: a record is never edited, an unacknowledged one never deleted.
            #expect(throws: DatabaseError.self) { try db.execute(sql: "UPDATE record SET body = '{\"x\":1}' WHERE seq = 1") }
            #expect(throws: DatabaseError.self) { try db.execute(sql: "DELETE FROM record WHERE seq = 2") }
            try db.execute(sql: "DELETE FROM receipt_info WHERE record_id = 'K-1-1'")
            try db.execute(sql: "DELETE FROM record WHERE seq = 1")   // accepted: may go
            // The contact phone still joins its record.
            #expect(try String.fetchOne(db, sql: "SELECT phone FROM record JOIN legal_aid_contact USING (record_id) WHERE seq = 3") == "13800000000")
        }
    }

    /// An unlucky (or tampered) store whose `record` table is not the one this version knows:
    /// the migration refuses it as damaged after it had already rebuilt `deduction`, and the
    /// whole migration rolls back, so the store is exactly as it was (nothing half-rebuilt).
    @Test func aStoreThisVersionDoesNotKnowIsRefusedUnchanged() throws {
        let path = try oldStore()
        try { let p = try DatabasePool(path: path); defer { try? p.close() }
              try p.write { try $0.execute(sql: "ALTER TABLE record RENAME COLUMN reverses TO reversed_by") } }()
        func rows() throws -> ([Row], [Row]) {
            let p = try DatabasePool(path: path); defer { try? p.close() }
            return try p.read { (try Row.fetchAll($0, sql: "SELECT rowid, * FROM deduction ORDER BY id"), try Row.fetchAll($0, sql: "SELECT rowid, * FROM record ORDER BY rowid")) }
        }
        let before = try storedSchema(path)
        let rowsBefore = try rows()
        expectRefusedAsDamaged(path, naming: "record")
        #expect(try storedSchema(path) == before)
        let rowsAfter = try rows()
        #expect(rowsAfter.0 == rowsBefore.0 && rowsAfter.1 == rowsBefore.1 && rowsAfter.0.count == 3)
    }

    /// The ledger's queries find the small partial indexes (a query that stopped naming
    /// `voided = 0` or `state = 'pending'` would scan every deduction ever made).
    @Test func theLedgerQueriesUseThePartialIndexes() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("k.sqlite").path)
        func plan(_ sql: String) throws -> String {
            try store.pool.read { db in try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: ["x"]).map { $0["detail"] as String }.joined(separator: "; ") }
        }
        #expect(try plan("SELECT EXISTS (SELECT 1 FROM deduction WHERE state = 'pending' AND card_number = ?)").contains("deduction_pending"))
        #expect(try plan("SELECT EXISTS (SELECT 1 FROM deduction WHERE voided = 0 AND bill_reference = ?)").contains("deduction_bill"))
        #expect(try plan("SELECT * FROM deduction WHERE bill_reference = ? AND voided = 0").contains("deduction_bill"))
        #expect(try plan("SELECT EXISTS (SELECT 1 FROM record WHERE reverses = ?)").contains("record_reverses"))
        let names = try store.pool.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'deduction'") }
        #expect(Set(names) == ["deduction_pending", "deduction_bill"])
    }
}

/// Issue 24 item 4: the ledger's `CHECK (c IN (…))` rules rewritten as comparisons (SQLite
/// built a temporary B-tree of the values for every row written). The same values, and only
/// they, are allowed; no row moves.
@Suite struct ChecksAsComparisonsTests {
    /// Every write the ledger makes to the three tables, as SQLite compiles it.
    static let writes = [
        """
        INSERT INTO record (device_id, seq, record_id, kind, created_at, body, deduction_id, person_ref, program, period, amount_fen, reverses)
        VALUES ('K-1', 9, 'K-1-9', 'alert', 'c', '{}', NULL, NULL, NULL, NULL, 0, NULL)
        """,
        "UPDATE record SET status = 'accepted', received_at = 'r', reject_reason = NULL WHERE record_id = 'K-1-9' AND status = 'queued'",
        "UPDATE deduction SET state = 'committed', resolved_at = 'r', resolution = 'x', card_ack = NULL WHERE id = 1",
        """
        INSERT INTO deduction (device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
            bill_reference, bill_fen, allocations, snapshot_id, institution, created_at)
        VALUES ('K-1', 'pending', 'C', 'P', '2026', 1, x'7200', zeroblob(16), 'B', 100, '[]', 'S', 'I', 'c')
        """,
        "INSERT OR REPLACE INTO bill_outcome (bill_reference, status, bill_fen, records, updated_at) VALUES ('B', 'waiting', 1, '[]', 'u')",
    ]

    @Test func noWriteBuildsATemporaryTableAndTheSameValuesAreAllowed() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("k.sqlite").path)
        // On the writer: a reader connection (query_only) compiles no constraint checks.
        try store.pool.writeWithoutTransaction { db in
            for sql in Self.writes {
                let program = try Row.fetchAll(db, sql: "EXPLAIN " + sql).map { $0["opcode"] as String }
                #expect(!program.contains("OpenEphemeral"), "\(sql)")
            }
            let tables = try String.fetchAll(db, sql: "SELECT sql FROM sqlite_schema WHERE name IN ('deduction', 'record', 'bill_outcome')")
            #expect(tables.count == 3 && tables.allSatisfy { !$0.contains(" IN (") })
        }
        try store.pool.write { db in
            let insert = "INSERT INTO record (device_id, seq, record_id, kind, created_at, body, status) VALUES ('K-1', ?, ?, ?, 'c', '{}', ?)"
            var seq = 0
            for kind in ["medical_subsidy", "subsidy_reversal", "legal_aid_application", "alert"] {
                for status in ["queued", "accepted", "rejected"] {
                    seq += 1
                    try db.execute(sql: insert, arguments: [seq, "K-1-\(seq)", kind, status])
                }
            }
            for (kind, status) in [("bonus", "queued"), ("alert", "lost"), ("ALERT", "queued"), ("alert", "queued ")] {
                seq += 1
                #expect(throws: DatabaseError.self) { try db.execute(sql: insert, arguments: [seq, "K-1-\(seq)", kind, status]) }
            }
            for status in ["waiting", "confirming", "granted", "refused", "cancelled", "pending"] {
                try db.execute(sql: "INSERT INTO bill_outcome (bill_reference, status, bill_fen, records, updated_at) VALUES (?, ?, 1, '[]', 'u')",
                               arguments: ["B-" + status, status])
            }
            #expect(throws: DatabaseError.self) {
                try db.execute(sql: "INSERT INTO bill_outcome (bill_reference, status, bill_fen, records, updated_at) VALUES ('B-x', 'paid', 1, '[]', 'u')")
            }
            let deduction = """
                INSERT INTO deduction (device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                    bill_reference, bill_fen, allocations, snapshot_id, institution, created_at, voided)
                VALUES ('K-1', ?, 'C', 'P', '2026', 1, x'7200', zeroblob(16), ?, 100, '[]', 'S', 'I', 'c', ?)
                """
            for state in ["pending", "committed", "voided"] {
                try db.execute(sql: deduction, arguments: [state, "B-" + state, state == "voided" ? 1 : 0])
            }
            #expect(throws: DatabaseError.self) { try db.execute(sql: deduction, arguments: ["granted", "B-g", 0]) }
            #expect(throws: DatabaseError.self) { try db.execute(sql: "UPDATE deduction SET state = 'done' WHERE state = 'pending'") }
        }
    }

    /// A kiosk's store of the previous release: every row kept, the file sound, and another
    /// connection (a second process) reads the new rules.
    @Test func aStoreOfThePreviousReleaseKeepsItsRowsAndIsSound() throws {
        let path = Fixture.tempDir().appendingPathComponent("old.sqlite").path
        let old = try DatabasePool(path: path)
        try KioskStore.migrator.migrate(old, upTo: "ledger-pages")
        try old.write { db in
            try db.execute(sql: "INSERT INTO record (device_id, seq, record_id, kind, created_at, body) VALUES ('K-1', 1, 'K-1-1', 'alert', 'c', '{}')")
            try db.execute(sql: "INSERT INTO bill_outcome (bill_reference, status, bill_fen, records, updated_at) VALUES ('B', 'granted', 1, '[]', 'u')")
        }
        let store = try KioskStore(path: path)
        #expect(try store.pool.read { try String.fetchAll($0, sql: "PRAGMA integrity_check") } == ["ok"])
        #expect(try store.records().map(\.recordID) == ["K-1-1"])
        #expect(throws: DatabaseError.self) { try old.write { try $0.execute(sql: "UPDATE bill_outcome SET status = 'paid'") } }
        #expect(try old.read { try String.fetchOne($0, sql: "SELECT status FROM bill_outcome") } == "granted")
        // The other connection compiles the new rules (no temporary B-tree), not its cached old ones.
        try old.writeWithoutTransaction { db in
            for sql in Self.writes {
                let program = try Row.fetchAll(db, sql: "EXPLAIN " + sql).map { $0["opcode"] as String }
                #expect(!program.contains("OpenEphemeral"), "\(sql)")
            }
        }
        try old.close()
    }

    /// The schema edited, then the migration fails after it (a disk full at its commit, say):
    /// everything rolls back, the old rules are there and the store takes writes as before.
    @Test func aMigrationThatFailsAfterTheEditLeavesTheOldRules() throws {
        let path = Fixture.tempDir().appendingPathComponent("rollback.sqlite").path
        let p = try DatabasePool(path: path)
        try KioskStore.migrator.migrate(p, upTo: "ledger-pages")
        let before = try p.read(schemaRows)
        var failing = DatabaseMigrator()
        failing.registerMigration("checks-then-failure") { db in
            try KioskStore.migrateChecksAsComparisons(db)
            #expect(try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE name = 'record'")?.contains("kind = 'alert'") == true)
            throw StoreError(kind: .diskFull, message: "the disk filled up")
        }
        #expect(throws: StoreError.self) { try failing.migrate(p) }
        #expect(try p.read(schemaRows) == before)
        try p.write { db in
            try db.execute(sql: "INSERT INTO record (device_id, seq, record_id, kind, created_at, body) VALUES ('K-1', 1, 'K-1-1', 'alert', 'c', '{}')")
            #expect(throws: DatabaseError.self) {
                try db.execute(sql: "INSERT INTO record (device_id, seq, record_id, kind, created_at, body) VALUES ('K-1', 2, 'K-1-2', 'bonus', 'c', '{}')")
            }
        }
        try p.close()
    }

    /// A store whose rule is not the one this release wrote (here a status more) is refused as
    /// damaged, and nothing of its schema changes.
    @Test func aRuleThisVersionDoesNotKnowIsRefusedUnchanged() throws {
        let path = Fixture.tempDir().appendingPathComponent("odd.sqlite").path
        try {
            let p = try DatabasePool(path: path); defer { try? p.close() }
            try KioskStore.migrator.migrate(p, upTo: "ledger-pages")
            try p.write { db in
                try db.execute(sql: "DROP TABLE bill_outcome")
                try db.execute(sql: "CREATE TABLE bill_outcome (bill_reference TEXT PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('waiting', 'paid')))")
            }
        }()
        let before = try storedSchema(path)
        #expect(before.contains { ($0["sql"] as String?)?.contains("state IN ('pending', 'committed', 'voided')") == true })
        expectRefusedAsDamaged(path, naming: "bill_outcome")
        #expect(try storedSchema(path) == before)
    }
}

/// Every table, index, trigger and view of a store, as stored.
func schemaRows(_ db: Database) throws -> [Row] {
    try Row.fetchAll(db, sql: "SELECT type, name, sql FROM sqlite_schema ORDER BY name")
}

/// The schema of the store at `path`, read on a connection of its own.
func storedSchema(_ path: String) throws -> [Row] {
    let p = try DatabasePool(path: path)
    defer { try? p.close() }
    return try p.read(schemaRows)
}

/// Opening the store at `path` is refused as a damaged store, naming `table`.
func expectRefusedAsDamaged(_ path: String, naming table: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try KioskStore(path: path)
        Issue.record("a store with an unknown \(table) table was opened", sourceLocation: sourceLocation)
    } catch let e as StoreError {
        #expect(e.kind == .corrupt && e.message.contains(table), "\(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("not a StoreError: \(error)", sourceLocation: sourceLocation)
    }
}
