import Entitlements
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
        config.prepareDatabase { db in
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

/// RFC 3339 UTC with `Z`, second precision, as every spec writes times.
public enum Timestamp {
    /// Foundation's formatter for what the fast paths leave to it (years before the
    /// Gregorian reform or past 9999). Made per use: `ISO8601DateFormatter` is not `Sendable`.
    static func foundationFormatter(fractional: Bool) -> ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = fractional ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        return f
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`, the second cut down (as `ISO8601DateFormatter` does).
    public static func string(_ d: Date) -> String {
        let t = d.timeIntervalSince1970
        guard t.isFinite, t > -12_000_000_000, t < 253_402_300_800 else { return foundationFormatter(fractional: false).string(from: d) }
        let seconds = Int64(t.rounded(.down))
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let (year, month, day) = CivilCalendar.date(days: days)
        guard year >= 1583, year <= 9999 else { return foundationFormatter(fractional: false).string(from: d) }
        let inDay = seconds - days * 86400
        var out = [UInt8](repeating: 0, count: 20)
        func put(_ v: Int64, at: Int, width: Int) {
            var v = v
            for i in stride(from: at + width - 1, through: at, by: -1) { out[i] = UInt8(0x30 + v % 10); v /= 10 }
        }
        put(year, at: 0, width: 4); out[4] = 0x2D; put(month, at: 5, width: 2); out[7] = 0x2D; put(day, at: 8, width: 2)
        out[10] = 0x54; put(inDay / 3600, at: 11, width: 2); out[13] = 0x3A; put(inDay / 60 % 60, at: 14, width: 2)
        out[16] = 0x3A; put(inDay % 60, at: 17, width: 2); out[19] = 0x5A
        return String(decoding: out, as: UTF8.self)
    }

    /// A strict RFC 3339 date-time, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, or nil.
    ///
    /// Gives exactly the `Date` that `ISO8601DateFormatter` (internet date time, with or
    /// without fractional seconds) gives for such a time: the fraction is cut to whole
    /// milliseconds, `z` is taken for `Z`, `-00:00` for UTC. Refused, unlike that formatter:
    /// anything before or after the time, a date that does not exist (February 30), hour
    /// 24, offsets such as `+0800`, `+08` or `+25:00`, zone names, non-ASCII digits.
    public static func date(_ s: String) -> Date? {
        var utf8 = s
        return utf8.withUTF8 { parse($0, text: s) }
    }

    static func parse(_ p: UnsafeBufferPointer<UInt8>, text: String) -> Date? {
        let n = p.count
        guard n >= 20 else { return nil }
        @inline(__always) func digits(_ at: Int, _ count: Int) -> Int? {
            var v = 0
            for i in at..<(at + count) {
                let d = Int(p[i]) &- 0x30
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
            }
            return v
        }
        guard let year = digits(0, 4), p[4] == UInt8(ascii: "-"), let month = digits(5, 2), p[7] == UInt8(ascii: "-"),
              let day = digits(8, 2), p[10] == UInt8(ascii: "T"), let hour = digits(11, 2), p[13] == UInt8(ascii: ":"),
              let minute = digits(14, 2), p[16] == UInt8(ascii: ":"), let second = digits(17, 2) else { return nil }
        var i = 19
        var millis = 0
        if p[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            while i < n, p[i] >= 0x30, p[i] <= 0x39 {
                if i - start < 3 { millis = millis * 10 + Int(p[i] - 0x30) }
                i += 1
            }
            guard i > start else { return nil }
            for _ in min(i - start, 3)..<3 { millis *= 10 }
        }
        guard i < n else { return nil }
        var offset = 0
        switch p[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            i += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard n - i == 6, let oh = digits(i + 1, 2), p[i + 3] == UInt8(ascii: ":"), let om = digits(i + 4, 2),
                  oh <= 23, om <= 59 else { return nil }
            offset = (oh * 3600 + om * 60) * (p[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        default:
            return nil
        }
        guard i == n, (1...12).contains(month), day >= 1, hour <= 23, minute <= 59, second <= 59 else { return nil }
        let leap = year % 4 == 0 && (year < 1583 || year % 100 != 0 || year % 400 == 0)
        let monthDays = month == 2 ? (leap ? 29 : 28) : (month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31)
        guard day <= monthDays else { return nil }
        guard year >= 1583 else {
            // Before the Gregorian reform Foundation's calendar is Julian: let it count.
            return foundationFormatter(fractional: false).date(from: text) ?? foundationFormatter(fractional: true).date(from: text)
        }
        let days = Int(CivilCalendar.days(year: Int64(year), month: Int64(month), day: Int64(day)))
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + Double(millis) / 1000)
    }
}
