import Crypto
import Entitlements
import Foundation
import GRDB
import GRDBSQLite

/// Why a snapshot was refused (snapshot spec §2), each a one-line reason.
public enum SnapshotRefusal: Error, Equatable, CustomStringConvertible {
    case unreadableFile(String)
    case emptyFile
    case notJSON(line: Int)
    case badHeader(String)
    case missingKey(line: Int, type: String, key: String)
    case badRecord(line: Int, String)
    case noTrailer
    case recordCountMismatch(trailer: Int, found: Int)
    case digestMismatch
    case untrustedAuthority(String)
    case badSignature
    case wrongBase(expected: String?, installed: String?)
    case notNewer(issuedAt: String, installed: String)
    case regionDiffers(snapshot: String, installed: String)
    /// Sync spec §6: `issued_at` more than 10 minutes ahead of the kiosk's clock.
    case issuedInFuture(issuedAt: String, now: String)
    case storage(String)

    public var code: String {
        switch self {
        case .unreadableFile: return "unreadable_file"
        case .emptyFile: return "empty_file"
        case .notJSON: return "not_json"
        case .badHeader: return "bad_header"
        case .missingKey: return "missing_key"
        case .badRecord: return "bad_record"
        case .noTrailer: return "no_trailer"
        case .recordCountMismatch: return "record_count_mismatch"
        case .digestMismatch: return "sha256_mismatch"
        case .untrustedAuthority: return "authority_key_untrusted"
        case .badSignature: return "signature_invalid"
        case .wrongBase: return "base_not_installed"
        case .notNewer: return "not_newer"
        case .regionDiffers: return "region_differs"
        case .issuedInFuture: return "issued_in_future"
        case .storage: return "storage_error"
        }
    }

    public var description: String {
        let text: String
        switch self {
        case .unreadableFile(let e): text = "cannot read the file: \(e)"
        case .emptyFile: text = "the file is empty"
        case .notJSON(let n): text = "line \(n) is not valid JSON"
        case .badHeader(let why): text = "header: \(why)"
        case .missingKey(let n, let t, let k): text = "line \(n): \(t) record misses its key \"\(k)\""
        case .badRecord(let n, let why): text = "line \(n): \(why)"
        case .noTrailer: text = "no trailer line"
        case .recordCountMismatch(let t, let f): text = "trailer says \(t) records, the file holds \(f)"
        case .digestMismatch: text = "sha256 does not match the file"
        case .untrustedAuthority(let k): text = "authority key \"\(k)\" is not trusted"
        case .badSignature: text = "signature does not verify"
        case .wrongBase(let e, let i): text = "delta's base \(e ?? "null") is not the installed snapshot \(i ?? "(none)")"
        case .notNewer(let a, let i): text = "issued_at \(a) is not later than the installed snapshot's \(i)"
        case .regionDiffers(let s, let i): text = "region \(s) differs from the installed \(i)"
        case .issuedInFuture(let a, let n): text = "issued_at \(a) is more than 10 minutes ahead of the kiosk's clock \(n)"
        case .storage(let e): text = "storage: \(e)"
        }
        // One line, whatever the file put in the values quoted above.
        let oneLine = text.unicodeScalars.map { $0.properties.generalCategory == .control ? $0.escaped(asASCII: true) : String($0) }.joined()
        return "snapshot refused (\(code)): \(oneLine)"
    }
}

public struct SnapshotHeader: Sendable, Equatable {
    public var snapshotID: String
    public var kind: String
    public var baseSnapshotID: String?
    public var region: String
    public var issuedAt: String
    public var expiresAt: String
    public var settledThrough: String
    public var authorityKeyID: String
}

public struct InstallReport: Sendable, Equatable {
    public var header: SnapshotHeader
    public var records: Int
    public var ignoredRecords: Int
}

/// Reads a file line by line in large chunks: constant memory whatever its size.
///
/// A line is at most `maxLine` bytes (its `\n` not counted; snapshot spec §1: 64 KiB). The
/// bound is checked while reading: once `maxLine + 1` bytes of one line are buffered without
/// its end, the reader stops and refuses (`bad_record` naming the line), so a file of one
/// endless line never costs more than one chunk plus one line of memory.
struct LineReader {
    static let maxLine = 64 * 1024
    static let chunk = 1 << 20

    let handle: FileHandle
    let maxLine: Int
    let chunkSize: Int
    var buffer = [UInt8]()
    var start = 0
    var eof = false
    /// Lines handed out so far: the next line's number is `lines + 1`.
    private(set) var lines = 0
    /// Bytes read from the file so far, and the most the buffer ever held (for tests).
    private(set) var bytesRead = 0
    private(set) var peakBuffered = 0

    init(handle: FileHandle, maxLine: Int = LineReader.maxLine, chunkSize: Int = LineReader.chunk) {
        self.handle = handle; self.maxLine = maxLine; self.chunkSize = chunkSize
    }

    /// The next line including its `\n` (the last may lack one), or nil at the end.
    mutating func next() throws -> ArraySlice<UInt8>? {
        while true {
            let available = buffer.count - start
            if available > 0 {
                // Only the first maxLine + 1 bytes can hold the end of a line that may be kept.
                let window = min(available, maxLine + 1)
                let from = start
                let nl: Int? = buffer.withUnsafeBytes { b in
                    memchr(b.baseAddress! + from, 0x0A, window).map { UnsafeRawPointer($0) - b.baseAddress! }
                }
                if let nl {
                    let line = buffer[start...nl]
                    start = nl + 1
                    lines += 1
                    return line
                }
                if available > maxLine { throw tooLong() }
            }
            if eof {
                guard start < buffer.count else { return nil }
                let line = buffer[start...]
                start = buffer.count
                lines += 1
                return line
            }
            if start > 0 { buffer.removeFirst(start); start = 0 }
            let chunk = try handle.read(upToCount: chunkSize) ?? Data()
            if chunk.isEmpty { eof = true } else {
                buffer.append(contentsOf: chunk)
                bytesRead += chunk.count
                peakBuffered = max(peakBuffered, buffer.count)
            }
        }
    }

    func tooLong() -> SnapshotRefusal {
        .badRecord(line: lines + 1, "the line is longer than \(maxLine) bytes")
    }
}

extension KioskStore {
    /// Installs a snapshot whole or not at all (snapshot spec §2): streamed from the file,
    /// applied inside one write transaction, verified at the trailer, committed only when
    /// everything holds. On refusal the installed snapshot stays exactly as it was.
    ///
    /// A `full` snapshot's person, card and usage lines are appended in file order to TEMP
    /// staging tables without indexes; once the trailer verifies, the live tables are emptied
    /// and refilled from them sorted by key (the last line of a key wins, as `INSERT OR
    /// REPLACE` in file order would), and the staging tables are dropped, all in the same
    /// transaction. Inserting in key order touches one B-tree page at a time instead of a
    /// random page per row. A refusal rolls back the transaction, staging tables included.
    ///
    /// Every record is held to snapshot spec v2 §1 "Rules" as it streams by (a breach is
    /// `bad_record` naming the line; a line over 64 KiB is refused while it is read, before it
    /// is held whole). A snapshot issued more than 10 minutes after `now` (the kiosk's clock)
    /// is refused `issued_in_future`; an installed one raises the clock floor (sync spec §6)
    /// to its `issued_at`, in the same transaction.
    public func installSnapshot(at url: URL, trustedAuthorities: [String: Curve25519.Signing.PublicKey], now: Date) throws -> InstallReport {
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw SnapshotRefusal.unreadableFile(error.localizedDescription)
        }
        defer { try? handle.close() }
        do {
            return try pool.write { db in
                var loader = SnapshotLoader(db: db, reader: LineReader(handle: handle), authorities: trustedAuthorities, now: now)
                return try loader.run()
            }
        } catch let r as SnapshotRefusal {
            throw r
        } catch let e as DatabaseError {
            throw SnapshotRefusal.storage(StoreError(e).message)
        } catch {
            throw SnapshotRefusal.unreadableFile("\(error)")   // a read that failed part-way
        }
    }

    /// The installed snapshot's header, or nil.
    public func installedSnapshot() throws -> (header: SnapshotHeader, installedAt: String, records: Int, ignored: Int)? {
        try pool.read { db in try SnapshotLoader.installed(db) }
    }
}

/// One install, inside one transaction.
struct SnapshotLoader {
    let db: Database
    var reader: LineReader
    let authorities: [String: Curve25519.Signing.PublicKey]
    let now: Date
    var hasher = SHA256()
    var lineNumber = 0
    var records = 0
    var ignored = 0

    init(db: Database, reader: LineReader, authorities: [String: Curve25519.Signing.PublicKey], now: Date) {
        self.db = db; self.reader = reader; self.authorities = authorities; self.now = now
    }

    static func installed(_ db: Database) throws -> (header: SnapshotHeader, installedAt: String, records: Int, ignored: Int)? {
        guard let r = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM snapshot_meta WHERE id = 1")) else { return nil }
        let h = SnapshotHeader(snapshotID: r["snapshot_id"], kind: r["kind"], baseSnapshotID: nil, region: r["region"],
                               issuedAt: r["issued_at"], expiresAt: r["expires_at"], settledThrough: r["settled_through"],
                               authorityKeyID: r["authority_key_id"])
        return (h, r["installed_at"], r["records"], r["ignored_records"])
    }

    /// The line's JSON object, parsed in place (no copy of the bytes); when `hashed`, the
    /// same bytes go into the file digest first.
    mutating func object(_ line: ArraySlice<UInt8>, hashed: Bool) throws -> [String: Any] {
        let parsed: Any? = line.withUnsafeBytes { raw -> Any? in
            if hashed { hasher.update(bufferPointer: raw) }
            guard let base = raw.baseAddress, raw.count > 0 else { return nil }
            // The Data borrows the line's bytes only for the parse: JSONSerialization copies
            // whatever it keeps into the objects it returns.
            let data = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: raw.count, deallocator: .none)
            return try? JSONSerialization.jsonObject(with: data)
        }
        guard let o = parsed as? [String: Any] else { throw SnapshotRefusal.notJSON(line: lineNumber) }
        return o
    }

    mutating func run() throws -> InstallReport {
        guard let first = try reader.next() else { throw SnapshotRefusal.emptyFile }
        lineNumber = 1
        let header = try checkHeader(object(first, hashed: true))
        let installed = try SnapshotLoader.installed(db)
        try checkAgainstInstalled(header, installed?.header)
        let issuedAt = Timestamp.date(header.issuedAt)!
        guard issuedAt <= now.addingTimeInterval(ClockFloor.tolerance) else {
            throw SnapshotRefusal.issuedInFuture(issuedAt: header.issuedAt, now: Timestamp.string(now))
        }
        let full = header.kind == "full"
        if full {
            // Programs and devices are few: straight into the emptied live tables. Persons,
            // cards and usage are staged and replace the live tables once the file verifies.
            for t in ["program", "device"] { try db.execute(sql: "DELETE FROM \(t)") }
            try Staging.create(db)
        }
        let statements = try Statements(db, staged: full)
        guard var pending = try reader.next() else { throw SnapshotRefusal.noTrailer }
        lineNumber = 2
        while let next = try reader.next() {
            try apply(object(pending, hashed: true), statements, delta: !full)
            records += 1
            pending = next
            lineNumber += 1
        }
        // `pending` is the trailer.
        let trailer = try object(pending, hashed: false)
        guard trailer["type"] as? String == "trailer" else { throw SnapshotRefusal.noTrailer }
        guard let count = SnapshotLoader.integer(trailer["records"]).map(Int.init), let sha = trailer["sha256"] as? String,
              let sig = trailer["signature"] as? String else { throw SnapshotRefusal.badRecord(line: lineNumber, "trailer misses records, sha256 or signature") }
        guard count == records else { throw SnapshotRefusal.recordCountMismatch(trailer: count, found: records) }
        let digest = Data(hasher.finalize())
        guard SnapshotWriter.hex(digest) == sha.lowercased() else { throw SnapshotRefusal.digestMismatch }
        guard let key = authorities[header.authorityKeyID] else { throw SnapshotRefusal.untrustedAuthority(header.authorityKeyID) }
        guard let signature = Data(base64Encoded: sig), key.isValidSignature(signature, for: digest) else { throw SnapshotRefusal.badSignature }

        if full { try Staging.replaceLiveTables(db) }
        try db.execute(sql: """
            INSERT OR REPLACE INTO snapshot_meta (id, snapshot_id, kind, region, issued_at, expires_at, settled_through,
                authority_key_id, installed_at, records, ignored_records)
            VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [header.snapshotID, header.kind, header.region, header.issuedAt, header.expiresAt,
                             header.settledThrough, header.authorityKeyID, Timestamp.string(now),
                             full ? records : records + (installed?.records ?? 0), ignored])
        // Sync spec §6: the clock floor learns the installed snapshot's issued_at.
        try KioskStore.raiseClockFloor(db, to: issuedAt)
        return InstallReport(header: header, records: records, ignoredRecords: ignored)
    }

    func checkHeader(_ o: [String: Any]) throws -> SnapshotHeader {
        guard o["type"] as? String == "header" else { throw SnapshotRefusal.badHeader("first line is not the header") }
        guard o["format"] as? String == "benefit-snapshot" else { throw SnapshotRefusal.badHeader("format is not benefit-snapshot") }
        guard SnapshotLoader.integer(o["format_version"]) == 2 else { throw SnapshotRefusal.badHeader("format_version is not 2") }
        if let field = SnapshotLoader.overlongString(o, path: "") {
            throw SnapshotRefusal.badRecord(line: 1, "header \(field) is longer than \(SnapshotLoader.maxString) bytes")
        }
        func field(_ k: String) throws -> String {
            guard let v = o[k] as? String, !v.isEmpty else { throw SnapshotRefusal.badHeader("\(k) missing") }
            return v
        }
        let kind = try field("kind")
        guard kind == "full" || kind == "delta" else { throw SnapshotRefusal.badHeader("kind \(SnapshotLoader.quoted(kind)) is neither full nor delta") }
        let h = SnapshotHeader(snapshotID: try field("snapshot_id"), kind: kind, baseSnapshotID: o["base_snapshot_id"] as? String,
                               region: try field("region"), issuedAt: try field("issued_at"), expiresAt: try field("expires_at"),
                               settledThrough: try field("settled_through"),
                               authorityKeyID: try field("authority_key_id"))
        for (k, v) in [("issued_at", h.issuedAt), ("expires_at", h.expiresAt), ("settled_through", h.settledThrough)] where Timestamp.date(v) == nil {
            throw SnapshotRefusal.badHeader("\(k) \(SnapshotLoader.quoted(v)) is not an RFC 3339 time")
        }
        if kind == "delta" && h.baseSnapshotID == nil { throw SnapshotRefusal.badHeader("a delta names no base_snapshot_id") }
        return h
    }

    func checkAgainstInstalled(_ h: SnapshotHeader, _ installed: SnapshotHeader?) throws {
        if h.kind == "delta" && h.baseSnapshotID != installed?.snapshotID {
            throw SnapshotRefusal.wrongBase(expected: h.baseSnapshotID, installed: installed?.snapshotID)
        }
        guard let installed else { return }
        guard h.region == installed.region else { throw SnapshotRefusal.regionDiffers(snapshot: h.region, installed: installed.region) }
        guard Timestamp.date(h.issuedAt)! > Timestamp.date(installed.issuedAt)! else {
            throw SnapshotRefusal.notNewer(issuedAt: h.issuedAt, installed: installed.issuedAt)
        }
    }

    /// The TEMP staging tables of a full install: rowid order is file order, no index.
    /// TEMP tables are private to the writer connection and never reach the WAL; created
    /// inside the install's transaction, a rollback removes them with everything else.
    enum Staging {
        /// Live table, staging table, columns (as in the live table), key columns.
        static let tables: [(live: String, stage: String, columns: String, key: String)] = [
            ("person", "snapshot_stage_person", "person_ref, status, status_reason, programs", "person_ref"),
            ("card", "snapshot_stage_card", "card_number, person_ref, status", "card_number"),
            ("usage", "snapshot_stage_usage", "person_ref, program, period, used_fen", "person_ref, program, period"),
        ]

        static func create(_ db: Database) throws {
            try db.execute(sql: """
                DROP TABLE IF EXISTS temp.snapshot_stage_person;
                DROP TABLE IF EXISTS temp.snapshot_stage_card;
                DROP TABLE IF EXISTS temp.snapshot_stage_usage;
                CREATE TEMP TABLE snapshot_stage_person (person_ref TEXT, status TEXT, status_reason TEXT, programs TEXT);
                CREATE TEMP TABLE snapshot_stage_card (card_number TEXT, person_ref TEXT, status TEXT);
                CREATE TEMP TABLE snapshot_stage_usage (person_ref TEXT, program TEXT, period TEXT, used_fen INTEGER);
                """)
        }

        /// Empties the live tables and refills them from the staging tables in key order,
        /// then drops the staging tables. Within one key, rows come in file order (rowid):
        /// `OR REPLACE` lets the last one win, as the direct path would.
        static func replaceLiveTables(_ db: Database) throws {
            for t in tables {
                try db.execute(sql: "DELETE FROM \(t.live)")
                try db.execute(sql: """
                    INSERT OR REPLACE INTO \(t.live) (\(t.columns))
                    SELECT \(t.columns) FROM temp.\(t.stage) ORDER BY \(t.key), rowid
                    """)
                try db.execute(sql: "DROP TABLE temp.\(t.stage)")
            }
        }
    }

    /// An insert of person, card or usage rows. Into the live tables (a delta) it runs through
    /// GRDB like every other write. Into the TEMP staging tables (a full snapshot: millions of
    /// rows, which nothing observes) it binds and steps with the SQLite C API: GRDB's
    /// per-execution bookkeeping cost more than SQLite's own append.
    struct RowInsert {
        let statement: Statement
        let direct: Bool

        func callAsFunction(_ a: String, _ b: String, _ c: String, _ d: String) throws {
            guard direct else { bind(1, a); bind(2, b); bind(3, c); bind(4, d); return try step() }
            try statement.execute(arguments: [a, b, c, d])
        }
        func callAsFunction(_ a: String, _ b: String, _ c: String) throws {
            guard direct else { bind(1, a); bind(2, b); bind(3, c); return try step() }
            try statement.execute(arguments: [a, b, c])
        }
        func callAsFunction(_ a: String, _ b: String, _ c: String, _ d: Int) throws {
            guard direct else { bind(1, a); bind(2, b); bind(3, c); sqlite3_bind_int64(statement.sqliteStatement, 4, Int64(d)); return try step() }
            try statement.execute(arguments: [a, b, c, d])
        }

        /// Text, copied by SQLite (an empty string stays an empty text, never NULL).
        private func bind(_ index: CInt, _ value: String) {
            var value = value
            value.withUTF8 { u in
                withUnsafePointer(to: 0 as CChar) { empty in
                    let bytes = u.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) } ?? empty
                    _ = sqlite3_bind_text(statement.sqliteStatement, index, bytes, CInt(u.count), RowInsert.transient)
                }
            }
        }

        private func step() throws {
            let handle = statement.sqliteStatement
            let code = sqlite3_step(handle)
            guard code == SQLITE_DONE else {
                let message = String(cString: sqlite3_errmsg(sqlite3_db_handle(handle)))
                sqlite3_reset(handle)
                throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
            }
            sqlite3_reset(handle)
        }

        /// SQLITE_TRANSIENT: SQLite takes its own copy of the bound bytes.
        static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
    }

    /// Cached statements for the bulk of the lines. For a full snapshot, persons, cards and
    /// usage are appended to the staging tables (a full snapshot deletes nothing).
    struct Statements {
        let person, card, usage: RowInsert
        let program, device: Statement
        let delPerson, delCard, delUsage, delProgram, delDevice: Statement
        init(_ db: Database, staged: Bool) throws {
            if staged {
                person = RowInsert(statement: try db.makeStatement(sql: "INSERT INTO temp.snapshot_stage_person (person_ref, status, status_reason, programs) VALUES (?, ?, ?, ?)"), direct: false)
                card = RowInsert(statement: try db.makeStatement(sql: "INSERT INTO temp.snapshot_stage_card (card_number, person_ref, status) VALUES (?, ?, ?)"), direct: false)
                usage = RowInsert(statement: try db.makeStatement(sql: "INSERT INTO temp.snapshot_stage_usage (person_ref, program, period, used_fen) VALUES (?, ?, ?, ?)"), direct: false)
            } else {
                person = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO person (person_ref, status, status_reason, programs) VALUES (?, ?, ?, ?)"), direct: true)
                card = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO card (card_number, person_ref, status) VALUES (?, ?, ?)"), direct: true)
                usage = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO usage (person_ref, program, period, used_fen) VALUES (?, ?, ?, ?)"), direct: true)
            }
            program = try db.makeStatement(sql: "INSERT OR REPLACE INTO program (code, json) VALUES (?, ?)")
            device = try db.makeStatement(sql: "INSERT OR REPLACE INTO device (device_id, public_key, institution, status) VALUES (?, ?, ?, ?)")
            delPerson = try db.makeStatement(sql: "DELETE FROM person WHERE person_ref = ?")
            delCard = try db.makeStatement(sql: "DELETE FROM card WHERE card_number = ?")
            delUsage = try db.makeStatement(sql: "DELETE FROM usage WHERE person_ref = ? AND program = ? AND period = ?")
            delProgram = try db.makeStatement(sql: "DELETE FROM program WHERE code = ?")
            delDevice = try db.makeStatement(sql: "DELETE FROM device WHERE device_id = ?")
        }
    }

    /// Program codes inside the `person.programs` column, joined by the unit separator.
    static let separator = "\u{1F}"

    static let personStatuses: Set<String> = ["active", "suspended", "revoked"]
    static let cardStatuses: Set<String> = ["active", "lost", "revoked", "replaced"]
    static let deviceStatuses: Set<String> = ["active", "retired"]

    /// Snapshot spec §1 "Rules": no string field longer than this many bytes.
    static let maxString = 256
    /// `limit_fen` is a positive integer no larger than this (1,000,000 yuan).
    static let maxLimitFen: Int64 = 100_000_000

    /// A JSON integer as an Int64: a number written without fraction or exponent that fits.
    /// `1.0`, `1e3`, `true` and `"1"` are not integers (JSONSerialization reads the first two
    /// as doubles, `true` as a boolean, all of which `as? Int` would accept).
    static func integer(_ v: Any?) -> Int64? { JSONInteger.value(v) }

    /// A value for a one-line refusal: at most 40 characters, control characters escaped.
    static func quoted(_ v: String) -> String {
        var out = ""
        for (i, c) in v.unicodeScalars.enumerated() {
            if i == 40 { out += "…"; break }
            out += c.properties.generalCategory == .control ? c.escaped(asASCII: true) : String(c)
        }
        return "\"" + out + "\""
    }

    /// The first string anywhere in `value` (nested lists and objects included) longer than
    /// `maxString` bytes, as the path of the field that holds it.
    static func overlongString(_ value: Any, path: String) -> String? {
        switch value {
        case let s as String:
            return s.utf8.count > maxString ? path : nil
        case let a as [Any]:
            for (i, e) in a.enumerated() { if let p = overlongString(e, path: "\(path)[\(i)]") { return p } }
            return nil
        case let o as [String: Any]:
            for (k, e) in o { if let p = overlongString(e, path: path.isEmpty ? k : "\(path).\(k)") { return p } }
            return nil
        default:
            return nil
        }
    }

    mutating func apply(_ o: [String: Any], _ s: Statements, delta: Bool) throws {
        guard let type = o["type"] as? String else { throw SnapshotRefusal.badRecord(line: lineNumber, "record without a type") }
        let line = lineNumber
        func bad(_ why: String) -> SnapshotRefusal { .badRecord(line: line, why) }
        let known = ["person", "card", "usage", "program", "device", "header", "trailer"].contains(type)
        guard known else { ignored += 1; return }   // an unknown record type: ignored, counted
        if let field = SnapshotLoader.overlongString(o, path: "") {
            throw bad("\(type) \(field) is longer than \(SnapshotLoader.maxString) bytes")
        }
        func key(_ k: String) throws -> String {
            guard let v = o[k] as? String, !v.isEmpty else { throw SnapshotRefusal.missingKey(line: line, type: type, key: k) }
            return v
        }
        func string(_ k: String, allowed: Set<String>? = nil, allowEmpty: Bool = false) throws -> String {
            guard let v = o[k] as? String, allowEmpty || !v.isEmpty else { throw bad("\(type) \(k) missing") }
            if let allowed, !allowed.contains(v) { throw bad("\(type) \(k) \(SnapshotLoader.quoted(v)) is not one of \(allowed.sorted())") }
            return v
        }
        func personRef(_ k: String = "person_ref") throws -> String {
            let v = try key(k)
            guard Identifiers.isPersonRef(v) else { throw bad("\(type) \(k) \(SnapshotLoader.quoted(v)) is not 32 lowercase hex digits") }
            return v
        }
        func programCode(_ v: String, _ field: String) throws -> String {
            guard Identifiers.isProgramCode(v) else { throw bad("\(type) \(field) \(SnapshotLoader.quoted(v)) is not 1–16 characters of A–Z 0–9 -") }
            return v
        }
        let delete = delta && (o["op"] as? String) == "delete"
        switch type {
        case "person":
            let id = try personRef()
            if delete { try s.delPerson.execute(arguments: [id]); return }
            guard let list = o["programs"] as? [Any] else { throw bad("person programs missing") }
            var programs: [String] = [], seen = Set<String>()
            for entry in list {
                guard let code = entry as? String else { throw bad("person programs holds something other than a program code") }
                _ = try programCode(code, "programs")
                // A code the file does not define is allowed (ignored for decisions); twice is not.
                guard seen.insert(code).inserted else { throw bad("person programs names \(code) twice") }
                programs.append(code)
            }
            try s.person(id, try string("status", allowed: SnapshotLoader.personStatuses),
                         (o["status_reason"] as? String) ?? "", programs.joined(separator: SnapshotLoader.separator))
        case "card":
            let number = try key("card_number")
            guard Identifiers.isCardNumber(number) else { throw bad("card card_number \(SnapshotLoader.quoted(number)) is not 16 digits") }
            if delete { try s.delCard.execute(arguments: [number]); return }
            try s.card(number, try personRef(), try string("status", allowed: SnapshotLoader.cardStatuses))
        case "usage":
            let id = try personRef(), program = try programCode(try key("program"), "program"), period = try key("period")
            if delete { try s.delUsage.execute(arguments: [id, program, period]); return }
            guard let used = SnapshotLoader.integer(o["used_fen"]) else { throw bad("usage used_fen is not an integer") }
            guard used >= 0 else { throw bad("usage used_fen \(used) is negative") }
            try s.usage(id, program, period, Int(used))
        case "program":
            let code = try programCode(try key("code"), "code")
            if delete { try s.delProgram.execute(arguments: [code]); return }
            if o["limit_fen"] != nil {
                guard let limit = SnapshotLoader.integer(o["limit_fen"]), (1...SnapshotLoader.maxLimitFen).contains(limit) else {
                    throw bad("program \(code) limit_fen is not a positive integer ≤ 100000000")
                }
            }
            if o["rate_percent"] != nil {
                guard let rate = SnapshotLoader.integer(o["rate_percent"]), (1...100).contains(rate) else {
                    throw bad("program \(code) rate_percent is not an integer 1–100")
                }
            }
            if let matters = o["matters"] {
                guard let list = matters as? [Any] else { throw bad("program \(code) matters is not a list") }
                for m in list {
                    guard let matter = m as? [String: Any], let mc = matter["code"] as? String else { throw bad("program \(code) has a matter without a code") }
                    guard Identifiers.isMatterCode(mc) else { throw bad("program \(code) matter code \(SnapshotLoader.quoted(mc)) is not 1–32 characters of a–z 0–9 _") }
                }
            }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            guard let program = try? JSONDecoder().decode(Program.self, from: data) else {
                throw bad("program \(code) is malformed")
            }
            if program.cardType == .medical {
                guard program.limitFen != nil, program.ratePercent != nil,
                      program.period == nil || program.period == "calendar_year" else {
                    throw bad("medical program \(code) needs limit_fen, rate_percent 1–100 and period calendar_year")
                }
            }
            try s.program.execute(arguments: [code, String(decoding: data, as: UTF8.self)])
        case "device":
            let id = try key("device_id")
            if delete { try s.delDevice.execute(arguments: [id]); return }
            let pk = try string("public_key")
            guard let raw = Data(base64Encoded: pk), raw.count == 32 else { throw bad("device \(SnapshotLoader.quoted(id)) public_key is not 32 bytes of base64") }
            try s.device.execute(arguments: [id, pk, (o["institution"] as? String) ?? "", try string("status", allowed: SnapshotLoader.deviceStatuses)])
        default:   // "header", "trailer"
            throw bad("a second \(type) inside the file")
        }
    }
}
