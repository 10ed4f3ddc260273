import Foundation
import GRDB
import GRDBSQLite
@testable import KioskStore
import KioskCore
import KioskProtocol
import TestVectors
import Testing
import VirtualCard

/// Issue 24 item 4: rows read in place with SQLite's column functions. What GRDB's `Row`
/// would have trapped on (a NULL or another storage class where a value must be) is a
/// damaged store, refused with `StoreError.corrupt`; what it read, this reads the same.
@Suite struct StoreRowTests {
    func queue() throws -> DatabaseQueue {
        let q = try DatabaseQueue()
        try q.write { db in
            try db.execute(sql: "CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n)")
            // The text holds a NUL (bound from Swift, GRDB would cut it there).
            try db.execute(sql: "INSERT INTO t VALUES (?, CAST(x'e4bbb7200078' AS TEXT), ?, NULL)", arguments: [Int64.min, Data([0, 1, 255])])
            try db.execute(sql: "INSERT INTO t VALUES (?, ?, ?, NULL)", arguments: [Int64.max, "", Data()])
        }
        return q
    }

    @Test func readsWhatGRDBReads() throws {
        try queue().read { db in
            let mine = try KioskStore.rows(db, "SELECT * FROM t ORDER BY i") { r in
                (try r["i"] as Int64, try r["s"] as String, try r["b"] as Data, try r["n"] as String?, try r[1] as String)
            }
            let theirs = try Row.fetchAll(db, sql: "SELECT * FROM t ORDER BY i").map { r in
                (r["i"] as Int64, r["s"] as String, r["b"] as Data? ?? Data(), r["n"] as String?)
            }
            #expect(mine.count == 2 && theirs.count == 2)
            for (m, t) in zip(mine, theirs) {
                #expect(m.0 == t.0 && m.2 == t.2 && m.3 == t.3)
            }
            // Text as SQLite holds it, by its length: GRDB's reading stops at an embedded NUL.
            #expect(mine[0].1 == "价 \u{0}x" && mine[0].4 == mine[0].1 && theirs[0].1 == "价 ")
            #expect(mine[1].1 == "" && theirs[1].1 == "" && mine[1].2.isEmpty)
            let max = try KioskStore.row(db, "SELECT i FROM t WHERE i = ?", [Int64.max]) { try $0[0] as Int64 }
            let none = try KioskStore.row(db, "SELECT i FROM t WHERE i = 0") { try $0[0] as Int64 }
            let one = try KioskStore.row(db, "SELECT 1") { try $0[0] as Bool }
            #expect(max == Int64.max && none == nil && one == true)
        }
    }

    @Test func aDamagedColumnIsRefusedNotTrapped() throws {
        try queue().read { db in
            func refused(_ sql: String, _ decode: (StoreRow) throws -> Any) {
                #expect {
                    _ = try KioskStore.rows(db, sql, [], decode)
                } throws: { ($0 as? StoreError)?.kind == .corrupt }
            }
            refused("SELECT s FROM t") { try $0["s"] as Int64 }          // text where an integer must be
            refused("SELECT i FROM t") { try $0["i"] as String }         // an integer where text must be
            refused("SELECT n FROM t") { try $0["n"] as String }         // NULL where a value must be
            refused("SELECT s FROM t") { try $0["s"] as Data }           // text where a blob must be
            refused("SELECT 1.5 AS r") { try $0["r"] as Int64 }          // a real is no integer
            refused("SELECT i FROM t") { try $0["missing"] as Int64? }   // a column the store lacks
            refused("SELECT i FROM t") { try $0[1] as Int64? }           // a position past the last column
        }
    }

    @Test func theStatementIsResetAfterAnError() throws {
        try queue().read { db in
            #expect(throws: StoreError.self) { try KioskStore.rows(db, "SELECT s FROM t ORDER BY i") { try $0[0] as Int64 } }
            // The same cached statement runs again from its first row.
            let again = try KioskStore.rows(db, "SELECT s FROM t ORDER BY i") { try $0[0] as String }
            #expect(again == ["价 \u{0}x", ""])
        }
    }

    @Test func bindsWhatItReadsBack() throws {
        try queue().write { db in
            let values: [any StoreBindable] = ["", "价 \u{0}x", Int64.min, Int.max, Data(), Data([0, 255]), String?.none, Data?.none]
            try KioskStore.run(db, "CREATE TABLE b (a, b, c, d, e, f, g, h)", [])
            try KioskStore.run(db, "INSERT INTO b VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
            let types = try KioskStore.row(db, "SELECT typeof(a), typeof(e), typeof(g), typeof(h) FROM b") {
                [try $0[0] as String, try $0[1] as String, try $0[2] as String, try $0[3] as String]
            }
            #expect(types == ["text", "blob", "null", "null"], "an empty text or blob is not NULL")
            let back = try #require(try KioskStore.row(db, "SELECT * FROM b") { r in
                (try r["a"] as String, try r["b"] as String, try r["c"] as Int64, try r["d"] as Int, try r["e"] as Data,
                 try r["f"] as Data, try r["g"] as String?, try r["h"] as Data?)
            })
            #expect(back.0 == "" && back.1 == "价 \u{0}x" && back.2 == Int64.min && back.3 == Int.max)
            #expect(back.4.isEmpty && back.5 == Data([0, 255]) && back.6 == nil && back.7 == nil)
            // Too few or too many arguments: refused before anything runs; the statement still works.
            #expect(throws: DatabaseError.self) { try KioskStore.run(db, "INSERT INTO b (a) VALUES (?)", []) }
            #expect(throws: DatabaseError.self) { try KioskStore.run(db, "INSERT INTO b (a) VALUES (?)", ["x", "y"]) }
            try KioskStore.run(db, "INSERT INTO b (a) VALUES (?)", ["z"])
            #expect(try KioskStore.rows(db, "SELECT a FROM b ORDER BY rowid") { try $0[0] as String } == ["", "z"])
        }
    }

    /// A deduction whose card sequence no card can hold: refused, where it trapped before.
    @Test func aDeductionWithAnImpossibleSequenceIsRefused() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("k.sqlite").path)
        let allocations = String(decoding: try JSONEncoder().encode([Allocation(program: "HM", subsidyFen: 1, usedBeforeFen: 0, usedAfterFen: 1)]), as: UTF8.self)
        try store.pool.write { db in
            try db.execute(sql: """
                INSERT INTO deduction (device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                    bill_reference, bill_fen, allocations, snapshot_id, institution, created_at)
                VALUES ('K-1', 'pending', 'C1', 'P', '2026', ?, x'7200', zeroblob(16), 'B1', 100, ?, 'S', 'I', '2026-12-01T00:00:00Z')
                """, arguments: [Int64(1) << 40, allocations])
        }
        #expect { _ = try store.pendingDeductions() } throws: { ($0 as? StoreError)?.kind == .corrupt }
    }
}

/// Issue 24 item 4: the store's own transactions (cached BEGIN and COMMIT).
@Suite struct StoreTransactionTests {
    struct Boom: Error {}

    @Test func aWriteThatThrowsLeavesNothingAndTheNextWriteWorks() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("t.sqlite").path)
        try store.pool.write { try $0.execute(sql: "CREATE TABLE t (x INTEGER)") }
        #expect(throws: Boom.self) {
            try store.write { db in
                try db.execute(sql: "INSERT INTO t VALUES (1)")
                throw Boom()
            }
        }
        // A statement that fails inside the transaction: rolled back whole, too.
        #expect(throws: StoreError.self) {
            try store.write { db in
                try db.execute(sql: "INSERT INTO t VALUES (2)")
                try db.execute(sql: "INSERT INTO no_such_table VALUES (3)")
            }
        }
        try store.write { db in try db.execute(sql: "INSERT INTO t VALUES (4)") }
        let rows = try store.read { db in try KioskStore.rows(db, "SELECT x FROM t") { try $0[0] as Int64 } }
        #expect(rows == [4])
        let open = try store.pool.writeWithoutTransaction { db in sqlite3_get_autocommit(db.sqliteConnection) }   // no transaction left open
        #expect(open != 0)
    }

    @Test func aStatementThatFailedRunsAgain() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("u.sqlite").path)
        try store.write { try KioskStore.run($0, "CREATE TABLE u (x TEXT UNIQUE)", []) }
        try store.write { try KioskStore.run($0, "INSERT INTO u VALUES (?)", ["a"]) }
        #expect(throws: StoreError.self) { try store.write { try KioskStore.run($0, "INSERT INTO u VALUES (?)", ["a"]) } }
        try store.write { try KioskStore.run($0, "INSERT INTO u VALUES (?)", ["b"]) }
        #expect(try store.read { try KioskStore.rows($0, "SELECT x FROM u ORDER BY x") { try $0[0] as String } } == ["a", "b"])
    }

    @Test func aReadThatThrowsLeavesTheReaderUsable() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("r.sqlite").path)
        for _ in 0..<3 {
            #expect(throws: Boom.self) { try store.read { _ in throw Boom() } }
        }
        #expect(try store.read { db in try KioskStore.row(db, "SELECT 7") { try $0[0] as Int64 } } == 7)
    }
}

/// Issue 24 item 4: a deduction's allocations are read with the strict scanner instead of
/// `JSONDecoder`. What either encoder wrote reads back the same; anything else is a damaged
/// ledger (never "nothing allocated", which would undercount L).
@Suite struct AllocationsReadingTests {
    let list = [Allocation(program: "HM", subsidyFen: 12_000, usedBeforeFen: 0, usedAfterFen: 12_000),
                Allocation(program: "价", subsidyFen: Int64.max, usedBeforeFen: Int64.min, usedAfterFen: -1)]

    @Test func whatEitherEncoderWroteReadsBack() throws {
        let old = String(decoding: try JSONEncoder().encode(list), as: UTF8.self)   // what stores before this change hold
        #expect(try Deduction.decodeAllocations(old) == list)
        #expect(try Deduction.decodeAllocations(try CompactJSON.string(list)) == list)
        #expect(try Deduction.decodeAllocations(" [ {\"usedAfterFen\":1, \"program\":\"A\",\"subsidyFen\":1,\"usedBeforeFen\":0} ] ")
                == [Allocation(program: "A", subsidyFen: 1, usedBeforeFen: 0, usedAfterFen: 1)])
    }

    @Test(arguments: [
        nil, "", "[]", "{}", "null", "[null]", "[[]]",
        #"[{"program":"A","subsidyFen":1,"usedBeforeFen":0}]"#,                                  // a member missing
        #"[{"program":"A","subsidyFen":1,"usedBeforeFen":0,"usedAfterFen":1,"x":1}]"#,            // one too many
        #"[{"program":"A","subsidyFen":1,"subsidyFen":2,"usedBeforeFen":0,"usedAfterFen":1}]"#,   // given twice
        #"[{"program":"A","program":"B","subsidyFen":1,"usedBeforeFen":0,"usedAfterFen":1}]"#,
        #"[{"program":1,"subsidyFen":1,"usedBeforeFen":0,"usedAfterFen":1}]"#,                    // of another type
        #"[{"program":"A","subsidyFen":"1","usedBeforeFen":0,"usedAfterFen":1}]"#,
        #"[{"program":"A","subsidyFen":1.5,"usedBeforeFen":0,"usedAfterFen":1}]"#,
        #"[{"program":"A","subsidyFen":99999999999999999999,"usedBeforeFen":0,"usedAfterFen":1}]"#,
        #"[{"program":"A","subsidyFen":1,"usedBeforeFen":0,"usedAfterFen":1}] x"#,                // text after it
        #"[{"program":"A","subsidyFen":1,"usedBeforeFen":0,"usedAfterFen":1}"#,                   // cut short
    ])
    func aDamagedListIsRefused(_ text: String?) {
        #expect { _ = try Deduction.decodeAllocations(text) } throws: { ($0 as? StoreError)?.kind == .corrupt }
    }
}

/// Issue 24 item 4, at the counter: a local process with write access to the store has put a
/// value no card can hold into the ledger (a pending deduction of card …0017 with a 41-bit
/// card sequence). GRDB's `Row` trapped on it and took kioskd down with the patient at the
/// screen; now the patient is told, in plain words, to go to the counter, the card is not
/// written, nothing is recorded, and the next person in the queue is served.
@Suite struct DamagedLedgerAtTheCounterTests {
    @Test func thePatientIsSentToTheCounterAndTheNextPersonIsServed() throws {
        let device = try Fixture.device()
        try device.store.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        let kiosk = Kiosk(device: device, clock: .fixed(Fixture.now))
        let cards = try CardDescription.decode(Data(contentsOf: Fixture.url("cards.json")))
        func card(_ number: String) throws -> CardEmulator { try CardEmulator(description: try #require(cards.first { $0.cardNumber == number })) }
        let e17 = try card("3307820000000017"), e58 = try card("3307820000000058")
        #expect(try kiosk.charge(EmulatedChannel(e17), billFen: 1000, billReference: "C1").decision.isGranted)

        // Another process, its own connection to the same file.
        let other = try DatabaseQueue(path: device.store.path)
        try other.write { db in
            try db.execute(sql: """
                INSERT INTO deduction (device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                    bill_reference, bill_fen, allocations, snapshot_id, institution, created_at)
                SELECT device_id, 'pending', card_number, person_ref, period, ?, usage_object, card_challenge,
                    'FORGED', bill_fen, allocations, snapshot_id, institution, created_at FROM deduction WHERE bill_reference = 'C1'
                """, arguments: [Int64(1) << 40])
        }
        try other.close()

        let written = e17.file(3), records = try device.store.records().map(\.recordID)
        do {
            _ = try kiosk.charge(EmulatedChannel(e17), billFen: 1000, billReference: "C2")
            Issue.record("a subsidy went through on a damaged ledger")
        } catch {
            let report = Outcomes.report(error)
            #expect(report.code == "store_error" && report.httpStatus == 503, "\(report)")
            #expect((error as? StoreError)?.kind == .corrupt, "\(error)")
            // What the screen says: plain words, no code or English.
            #expect(!report.message.isEmpty && !report.message.unicodeScalars.contains { ("a"..."z").contains($0) || $0 == "_" }, "\(report.message)")
        }
        #expect(e17.file(3) == written, "the card was not written")
        #expect(try device.store.records().map(\.recordID) == records, "nothing was recorded")
        // The next person in the queue (another card, another person) is served.
        #expect(try kiosk.charge(EmulatedChannel(e58), billFen: 1000, billReference: "C3").decision.isGranted)
    }
}
