import Crypto
import Entitlements
import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Why a snapshot was refused (snapshot spec §2), each a one-line reason.
public enum SnapshotRefusal: Error, Equatable, CustomStringConvertible {
    /// The file cannot be opened or read.
    case unreadableFile(String)
    /// The file holds no line.
    case emptyFile
    /// A line is not a JSON object.
    case notJSON(line: Int)
    /// Line 1 is not a version 2 header, or a header field is missing or malformed.
    case badHeader(String)
    /// A record lacks the key of its type.
    case missingKey(line: Int, type: String, key: String)
    /// A record breaks a rule of snapshot spec §1 (or the line is over 64 KiB).
    case badRecord(line: Int, String)
    /// The last line is not a trailer.
    case noTrailer
    /// The trailer's `records` is not the number of records in the file.
    case recordCountMismatch(trailer: Int, found: Int)
    /// The trailer's `sha256` is not the file's.
    case digestMismatch
    /// The authority key is not one trusted at provisioning.
    case untrustedAuthority(String)
    /// The authority's signature does not verify.
    case badSignature
    /// A delta whose base is not the installed snapshot.
    case wrongBase(expected: String?, installed: String?)
    /// Issued no later than the installed snapshot.
    case notNewer(issuedAt: String, installed: String)
    /// For another region than the installed snapshot's.
    case regionDiffers(snapshot: String, installed: String)
    /// Sync spec §6: `issued_at` more than 10 minutes ahead of the kiosk's clock.
    case issuedInFuture(issuedAt: String, now: String)
    /// The store failed while installing.
    case storage(String)

    /// The refusal's code (`signature_invalid`, `bad_record`, …), as the alert and the sync client name it.
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

    /// `snapshot refused (code): why`, on one line whatever the file held.
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

/// A snapshot's header line (snapshot spec §1), as checked; the installed snapshot's is kept.
public struct SnapshotHeader: Sendable, Equatable {
    /// `snapshot_id`.
    public var snapshotID: String
    /// `full` or `delta`.
    public var kind: String
    /// A delta's `base_snapshot_id`; nil for a full (and for the installed snapshot as stored).
    public var baseSnapshotID: String?
    /// The region the snapshot is for.
    public var region: String
    /// `issued_at`, RFC 3339.
    public var issuedAt: String
    /// `expires_at`, RFC 3339: no subsidy is granted on the snapshot after it.
    public var expiresAt: String
    /// `settled_through`, RFC 3339: records the hub received at or before it are counted in S.
    public var settledThrough: String
    /// The authority key that signed the snapshot.
    public var authorityKeyID: String
}

/// What an install put live.
public struct InstallReport: Sendable, Equatable {
    /// The installed snapshot's header.
    public var header: SnapshotHeader
    /// The records between the file's header and trailer, ignored ones included.
    public var records: Int
    /// Records of unknown types, counted and ignored (snapshot spec §1).
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
    public func installSnapshot(at url: URL, trustedAuthorities: [String: Curve25519.Signing.PublicKey], now: Date) throws -> InstallReport {
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

/// Where a snapshot's records go: a delta's statements, or a full install's batches.
protocol SnapshotSink {
    mutating func person(_ personRef: String, _ status: String, _ reason: String, _ programs: String) throws
    mutating func card(_ number: String, _ personRef: String, _ status: String) throws
    mutating func usage(_ personRef: String, _ program: String, _ period: String, _ usedFen: Int) throws
    mutating func program(_ code: String, _ json: String) throws
    mutating func device(_ id: String, _ publicKey: String, _ institution: String, _ status: String) throws
    mutating func delete(_ type: String, _ key: [String]) throws
}

/// One install: the header, then the records streamed into a sink, then the trailer.
struct SnapshotLoader {
    var reader: LineReader
    let authorities: [String: Curve25519.Signing.PublicKey]
    let now: Date
    var hasher = SHA256()
    var lineNumber = 0
    var records = 0
    var ignored = 0

    var header: SnapshotHeader?

    init(reader: LineReader, authorities: [String: Curve25519.Signing.PublicKey], now: Date) {
        self.reader = reader; self.authorities = authorities; self.now = now
    }

    /// Another install finished since this one began: refused, nothing of it applied.
    static func expectInstalled(_ db: Database, _ id: String?) throws {
        guard try installed(db)?.header.snapshotID == id else {
            throw StoreError(kind: .other, message: "another snapshot was installed meanwhile; sync again")
        }
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

    /// Line 1: the header, checked.
    mutating func readHeader() throws -> SnapshotHeader {
        guard let first = try reader.next() else { throw SnapshotRefusal.emptyFile }
        lineNumber = 1
        let h = try checkHeader(object(first, hashed: true))
        header = h
        return h
    }

    /// Every record into `sink` (`between` runs after each, to flush batches), then the
    /// trailer: count, digest and the authority's signature.
    mutating func stream<S: SnapshotSink>(into sink: inout S, delta: Bool, between: (inout S) throws -> Void) throws {
        guard let header else { throw SnapshotRefusal.badHeader("no header read") }
        guard var pending = try reader.next() else { throw SnapshotRefusal.noTrailer }
        lineNumber = 2
        while let next = try reader.next() {
            try apply(object(pending, hashed: true), &sink, delta: delta)
            records += 1
            try between(&sink)
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

    static func checkAgainstInstalled(_ h: SnapshotHeader, _ installed: SnapshotHeader?) throws {
        if h.kind == "delta" && h.baseSnapshotID != installed?.snapshotID {
            throw SnapshotRefusal.wrongBase(expected: h.baseSnapshotID, installed: installed?.snapshotID)
        }
        guard let installed else { return }
        guard h.region == installed.region else { throw SnapshotRefusal.regionDiffers(snapshot: h.region, installed: installed.region) }
        guard Timestamp.date(h.issuedAt)! > Timestamp.date(installed.issuedAt)! else {
            throw SnapshotRefusal.notNewer(issuedAt: h.issuedAt, installed: installed.issuedAt)
        }
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
        /// Rows of one table per copy transaction (a commit waits for one range at most).
        var rowsPerRange = 50_000
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
            let person = RowInsert(statement: try db.cachedStatement(sql: "INSERT INTO \(staging("person")) VALUES (?, ?, ?, ?)"), direct: false)
            let card = RowInsert(statement: try db.cachedStatement(sql: "INSERT INTO \(staging("card")) VALUES (?, ?, ?)"), direct: false)
            let usage = RowInsert(statement: try db.cachedStatement(sql: "INSERT INTO \(staging("usage")) VALUES (?, ?, ?, ?)"), direct: false)
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

    /// A delta's statements, on the live generation's tables.
    struct Statements: SnapshotSink {
        let person, card, usage: RowInsert
        let programInsert, deviceInsert: Statement
        let delPerson, delCard, delUsage, delProgram, delDevice: Statement
        init(_ db: Database, generation g: Int) throws {
            person = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO person_\(g) (person_ref, status, status_reason, programs) VALUES (?, ?, ?, ?)"), direct: true)
            card = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO card_\(g) (card_number, person_ref, status) VALUES (?, ?, ?)"), direct: true)
            usage = RowInsert(statement: try db.makeStatement(sql: "INSERT OR REPLACE INTO usage_\(g) (person_ref, program, period, used_fen) VALUES (?, ?, ?, ?)"), direct: true)
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

    /// Program codes inside the `person.programs` column, joined by the unit separator.
    static let separator = "\u{1F}"

    static let personStatuses: Set<String> = ["active", "suspended", "revoked"]
    static let cardStatuses: Set<String> = ["active", "lost", "revoked", "replaced"]
    static let deviceStatuses: Set<String> = ["active", "retired"]

    /// Snapshot spec §1 "Rules": no string field longer than this many bytes.
    static let maxString = 256
    /// `limit_fen` is a positive integer no larger than this (1,000,000 yuan).
    static let maxLimitFen: Int64 = 100_000_000
    /// The most a `usage` record's `used_fen` may be (snapshot spec, amendment 2026-12-06).
    static let maxUsedFen: Int64 = 9_000_000_000_000

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

    mutating func apply<S: SnapshotSink>(_ o: [String: Any], _ s: inout S, delta: Bool) throws {
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
            if delete { try s.delete("person", [id]); return }
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
            if delete { try s.delete("card", [number]); return }
            try s.card(number, try personRef(), try string("status", allowed: SnapshotLoader.cardStatuses))
        case "usage":
            let id = try personRef(), program = try programCode(try key("program"), "program"), period = try key("period")
            if delete { try s.delete("usage", [id, program, period]); return }
            guard let used = SnapshotLoader.integer(o["used_fen"]) else { throw bad("usage used_fen is not an integer") }
            // Snapshot spec (amendment 2026-12-06): 0–9,000,000,000,000, so no sum a terminal makes overflows.
            guard (0...SnapshotLoader.maxUsedFen).contains(used) else { throw bad("usage used_fen \(used) is not 0–\(SnapshotLoader.maxUsedFen)") }
            try s.usage(id, program, period, Int(used))
        case "program":
            let code = try programCode(try key("code"), "code")
            if delete { try s.delete("program", [code]); return }
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
            try s.program(code, String(decoding: data, as: UTF8.self))
        case "device":
            let id = try key("device_id")
            if delete { try s.delete("device", [id]); return }
            let pk = try string("public_key")
            guard let raw = Data(base64Encoded: pk), raw.count == 32 else { throw bad("device \(SnapshotLoader.quoted(id)) public_key is not 32 bytes of base64") }
            try s.device(id, pk, (o["institution"] as? String) ?? "", try string("status", allowed: SnapshotLoader.deviceStatuses))
        default:   // "header", "trailer"
            throw bad("a second \(type) inside the file")
        }
    }
}
