import Crypto
import KioskProtocol
import Foundation
import Synchronization
import HubStore

/// What the publisher signs with and how long its snapshots last (sync spec §5).
public struct PublisherConfiguration: Sendable {
    /// The region published.
    public var region: String
    /// The authority key's id, written as the snapshot's `authority_key_id`.
    public var authorityKeyID: String
    /// The authority key that signs every snapshot (the hub never holds it).
    public var authorityKey: Curve25519.Signing.PrivateKey
    /// `expires_at` = `issued_at` + this (default 30 days).
    public var validity: TimeInterval = 30 * 86_400
    /// A full at least this often (default daily).
    public var fullEvery: TimeInterval = 86_400
    /// Snapshots older than the latest full leave the shelf after this (default 30 days).
    public var keepFor: TimeInterval = 30 * 86_400
    /// When no delta can be read from what changed (no mark kept, a program changed, or the
    /// changes outgrow the full), a region of at most this many published entries is
    /// recomputed in memory and compared with what the kiosks hold (a delta if smaller);
    /// a larger one gets a streamed full, in flat memory (default 500,000 entries).
    public var inMemoryEntries = 500_000

    /// A configuration with the defaults for the rest.
    public init(region: String, authorityKeyID: String, authorityKey: Curve25519.Signing.PrivateKey) {
        self.region = region
        self.authorityKeyID = authorityKeyID
        self.authorityKey = authorityKey
    }

    /// The authority key from a file readable by its owner alone (0600 or stricter): base64
    /// of the 32-byte Ed25519 seed, or the 32 raw bytes.
    public static func readKey(file: String) throws -> Curve25519.Signing.PrivateKey {
        var st = stat()
        guard stat(file, &st) == 0 else { throw PublisherError.key("\(file) cannot be read") }
        guard st.st_mode & 0o077 == 0 else {
            throw PublisherError.key("\(file) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: file) else { throw PublisherError.key("\(file) cannot be read") }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let seed = data.count == 32 ? data : (Data(base64Encoded: text) ?? Data())
        guard seed.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            throw PublisherError.key("\(file) holds neither a base64 32-byte seed nor 32 raw bytes")
        }
        return key
    }
}

/// Why the publisher cannot publish (the refusals of the verified roster are `RosterArchiveError`).
public enum PublisherError: Error, Equatable, CustomStringConvertible {
    /// The authority key file cannot be used, with why.
    case key(String)
    /// The next id (`<region>-<YYYYMMDD>-<HHMMSS>`, China time) would not be newer than the latest.
    case clockBehind(newID: String, latest: String)
    /// The region has no roster entry yet.
    case emptyRoster(String)

    /// The refusal in one line, saying what to do.
    public var description: String {
        switch self {
        case .key(let why): return "authority key: \(why)"
        case .clockBehind(let n, let l): return "the next snapshot id \(n) would not be newer than \(l): is the publisher's clock behind?"
        case .emptyRoster(let r): return "region \(r) has no roster: import a roster change first"
        }
    }
}

/// S passed a program's limit (sync spec §5): an over-grant for the operators to recover.
public struct OverLimit: Sendable, Equatable {
    /// The person over the limit.
    public var personRef: String
    /// The program whose limit S passed.
    public var program: String
    /// The period (calendar year, China Standard Time).
    public var period: String
    /// S, in fen.
    public var usedFen: Int64
    /// The program's limit, in fen.
    public var limitFen: Int64
    /// An over-limit case as given.
    public init(personRef: String, program: String, period: String, usedFen: Int64, limitFen: Int64) {
        self.personRef = personRef; self.program = program; self.period = period; self.usedFen = usedFen; self.limitFen = limitFen
    }
}

/// What one publication did.
public struct Publication: Sendable, Equatable {
    /// The snapshot put on the shelf.
    public var snapshot: PublishedSnapshot
    /// Entries written (a full: all; a delta: the changed and deleted).
    public var records: Int
    /// New over-limit cases raised by this publication.
    public var overLimit: [OverLimit]
    /// Whether the whole state was read (a full, a program change, no mark kept) rather than
    /// only what changed since the latest publication.
    public var recomputed: Bool
    /// Records stored since the previous publication whose amounts lie outside the upload
    /// spec's bounds (stored before the hub checked them): left out of S, for the operators.
    public var leftOut: Int64 = 0
}

/// The publisher (sync spec §5): from the stored roster and every stored record, the region's
/// next signed snapshot, a delta with only what changed since the latest or a full, put on
/// the hub's shelf. Holds the authority key; the hub process never does.
public final class SnapshotPublisher: Sendable {
    /// The hub's database and shelf: read from and published into.
    public let database: HubDatabase
    /// The region, the authority key and the intervals.
    public let configuration: PublisherConfiguration
    /// The publisher's own record of the verified roster changes (issue 21 item 1): every
    /// roster entry signed is checked against it. `hub-publisher` always has one
    /// (`--archive`); nil only where a test drives publication on its own database.
    public let archive: RosterArchive?
    let now: @Sendable () -> Date

    /// A publisher for one region; `now` is the clock of `issued_at` and the snapshot ids.
    public init(database: HubDatabase, configuration: PublisherConfiguration, archive: RosterArchive? = nil,
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.configuration = configuration
        self.archive = archive
        self.now = now
    }

    /// `body` with a reader of the verified roster (nil without an archive).
    func verified<T>(_ body: (RosterArchive.Reader?) throws -> T) throws -> T {
        guard let archive else { return try body(nil) }
        return try archive.read { try body($0) }
    }

    static func canonical(_ o: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data(), as: UTF8.self)
    }

    /// What a publication had seen: roster changes up to `rosterSeq`, stored records up to
    /// `recordRowid`, and records received up to `cut` counted in S.
    struct Mark: Sendable, Equatable {
        var rosterSeq: Int64
        var recordRowid: Int64
        var cut: String
    }

    /// One snapshot entry: its `type`, its key (snapshot spec §1) and its canonical line.
    typealias Entry = (type: String, key: String, line: String)

    /// What a publication writes and what it leaves the published state as.
    struct Plan {
        var full: Bool
        /// Entries to write (a full: every one).
        var entries: [Entry]
        /// `type|key` of the entries a delta deletes.
        var deleted: [String]
        /// The over-limit cases among what was computed.
        var overLimit: [OverLimit]
        var mark: Mark
        /// A full replaces `published_entry` whole; a delta updates only its entries.
        var replacesPublished: [Entry]?
        var recomputed: Bool { replacesPublished != nil }
        var bytes: Int { entries.reduce(0) { $0 + $1.line.utf8.count + 1 } + deleted.count * 80 }
    }

    /// The instant of the cut (sync spec §5: every record received at or before it is counted,
    /// none after). The hub stamps `received_at` (whole seconds) inside its write transaction,
    /// so once this process holds the write lock every earlier upload has committed and every
    /// later one is stamped at or after now: the second before now's is complete.
    func settledCut() throws -> Date {
        let instant = try database.engine.instantBetweenWrites(now)
        return Date(timeIntervalSince1970: instant.timeIntervalSince1970.rounded(.down) - 1)
    }

    /// S counts only records whose amounts are within the upload spec's bounds (amendment
    /// 2026-12-06: 0–99,999,999 fen), so no sum can overflow: a record stored before the hub
    /// checked them is left out and counted by `outOfRangeRecords` for the operators, and
    /// the region is still published (issue 21).
    static let usageSQL = """
        SELECT program, period, CAST(SUM(amount) AS BIGINT) AS used FROM (
            SELECT program, period, subsidy_fen AS amount FROM hub_record
                WHERE person_ref = ? AND kind = 'medical_subsidy' AND received_at <= ? AND subsidy_fen BETWEEN 0 AND 99999999
            UNION ALL
            SELECT s.program, s.period, -r.amount_fen FROM hub_record s JOIN hub_record r ON r.reverses = s.record_id
                WHERE s.person_ref = ? AND r.kind = 'subsidy_reversal' AND r.received_at <= ? AND r.amount_fen BETWEEN 0 AND 99999999
                  AND s.subsidy_fen BETWEEN 0 AND 99999999) AS u
        GROUP BY program, period ORDER BY program, period
        """

    static func usageLine(person: String, program: String, period: String, used: Int64) -> String {
        canonical(["type": "usage", "person_ref": person, "program": program, "period": period, "used_fen": used])
    }

    static func limits(_ programs: [Entry]) -> [String: Int64] {
        var limits: [String: Int64] = [:]
        for e in programs where e.type == "program" {
            if let o = try? JSONSerialization.jsonObject(with: Data(e.line.utf8)) as? [String: Any], let limit = JSONInteger.value(o["limit_fen"]) {
                limits[e.key] = limit
            }
        }
        return limits
    }

    static func readMark(_ c: any SQLConnection) throws -> Mark {
        Mark(rosterSeq: try c.int("SELECT COALESCE(MAX(seq), 0) FROM roster_change") ?? 0,
             recordRowid: try c.int("SELECT COALESCE(MAX(rowid), 0) FROM hub_record") ?? 0, cut: "")
    }

    /// The region's whole state as the next snapshot would hold it, by `type|key`, read in one
    /// transaction with the mark it corresponds to.
    func currentState(cut: String) throws -> (lines: [String: Entry], overLimit: [OverLimit], mark: Mark) {
        let region = configuration.region
        return try verified { v in try database.engine.read { c in
            var mark = try Self.readMark(c)
            mark.cut = cut
            var lines: [String: Entry] = [:]
            var persons = Set<String>()
            var programs: [Entry] = []
            try c.stream("SELECT type, key, line FROM roster_entry WHERE region = ?", arguments: [.text(region)]) { r in
                let e: Entry = (try r.text("type"), try r.text("key"), try r.text("line"))
                try v?.check(region: region, type: e.type, key: e.key, line: e.line)
                lines["\(e.type)|\(e.key)"] = e
                if e.type == "person" { persons.insert(e.key) }
                if e.type == "program" { programs.append(e) }
            }
            guard !lines.isEmpty else { throw PublisherError.emptyRoster(region) }
            if let v, try v.count(region: region) != lines.count {
                throw RosterArchiveError.mismatch(region: region, "the database holds \(lines.count) entries, the verified changes \(try v.count(region: region))")
            }
            let limits = Self.limits(programs)
            // S per person, program and period: every stored subsidy (flagged ones too) less
            // stored reversals, received at or before the cut.
            var over: [OverLimit] = []
            try c.stream(Self.regionUsageSQL, arguments: [.text(cut), .text(cut), .text(region)]) { row in
                let person = try row.text("person_ref"), program = try row.text("program"), period = try row.text("period")
                guard persons.contains(person) else { return }
                let used = max(0, try row.int("used"))
                let key = "\(person)|\(program)|\(period)"
                lines["usage|\(key)"] = ("usage", key, Self.usageLine(person: person, program: program, period: period, used: used))
                if let limit = limits[program], used > limit {
                    over.append(OverLimit(personRef: person, program: program, period: period, usedFen: used, limitFen: limit))
                }
            }
            return (lines, over, mark)
        } }
    }

    /// Only what moved since `since`, read in one transaction: roster entries changed or
    /// deleted by later changes, and S recomputed for the persons those touch or that later
    /// records (by rowid, or received after the previous cut) name. Nil when a program
    /// changed (limits move every over-limit case: the whole state is recomputed then).
    func changes(since previous: Mark, cut: String) throws -> Plan? {
        let region = configuration.region
        return try verified { v in try database.engine.read { c -> Plan? in
            var mark = try Self.readMark(c)
            mark.cut = cut
            let changed = try c.rows("SELECT type, key, line FROM roster_entry WHERE region = ? AND seq > ?", region, previous.rosterSeq)
                .map { (type: try $0.text("type"), key: try $0.text("key"), line: try $0.text("line")) }
            let removed = try c.rows("SELECT type, key FROM roster_tombstone WHERE region = ? AND seq > ?", region, previous.rosterSeq)
                .map { (type: try $0.text("type"), key: try $0.text("key")) }
            if changed.contains(where: { $0.type == "program" }) || removed.contains(where: { $0.type == "program" }) { return nil }
            // Issue 21 item 1: every entry a delta would sign is the verified one; every delete is one.
            for e in changed { try v?.check(region: region, type: e.type, key: e.key, line: e.line) }
            for e in removed { try v?.checkAbsent(region: region, type: e.type, key: e.key) }
            let publishedLine = "SELECT line FROM published_entry WHERE region = ? AND type = ? AND key = ?"
            var entries: [Entry] = []
            var deleted: [String] = []
            var persons = Set<String>()
            for e in changed {
                if try c.text(publishedLine, region, e.type, e.key) != e.line { entries.append(e) }
                if e.type == "person" { persons.insert(e.key) }
            }
            for e in removed {
                if try c.text(publishedLine, region, e.type, e.key) != nil { deleted.append("\(e.type)|\(e.key)") }
                if e.type == "person" { persons.insert(e.key) }
            }
            let named = try c.texts("""
                SELECT person_ref FROM hub_record WHERE kind = 'medical_subsidy' AND person_ref IS NOT NULL AND (received_at > ? OR rowid > ?)
                UNION
                SELECT s.person_ref FROM hub_record r JOIN hub_record s ON s.record_id = r.reverses
                    WHERE r.kind = 'subsidy_reversal' AND s.person_ref IS NOT NULL AND (r.received_at > ? OR r.rowid > ?)
                """, previous.cut, previous.recordRowid, previous.cut, previous.recordRowid)
            persons.formUnion(named)
            let limits = Self.limits(try c.rows("SELECT type, key, line FROM roster_entry WHERE region = ? AND type = 'program'", region)
                .map { (try $0.text("type"), try $0.text("key"), try $0.text("line")) })
            var over: [OverLimit] = []
            for person in persons.sorted() {
                var now: [String: String] = [:]
                let inRoster = try v.map { try $0.line(region: region, type: "person", key: person) != nil }
                    ?? c.exists("SELECT 1 FROM roster_entry WHERE region = ? AND type = 'person' AND key = ?", region, person)
                if inRoster {
                    for row in try c.rows(Self.usageSQL, person, cut, person, cut) {
                        let program = try row.text("program"), period = try row.text("period")
                        let used = max(0, try row.int("used"))
                        now["\(person)|\(program)|\(period)"] = Self.usageLine(person: person, program: program, period: period, used: used)
                        if let limit = limits[program], used > limit {
                            over.append(OverLimit(personRef: person, program: program, period: period, usedFen: used, limitFen: limit))
                        }
                    }
                }
                let before = try c.rows("SELECT key, line FROM published_entry WHERE region = ? AND type = 'usage' AND key > ? AND key < ?",
                                        region, person + "|", person + "}")
                    .reduce(into: [String: String]()) { $0[try $1.text("key")] = try $1.text("line") }
                for (key, line) in now where before[key] != line { entries.append(("usage", key, line)) }
                for key in before.keys where now[key] == nil { deleted.append("usage|\(key)") }
            }
            return Plan(full: false, entries: entries, deleted: deleted.sorted(), overLimit: over, mark: mark, replacesPublished: nil)
        } }
    }

    /// Gives the publication lock up (another publisher takes over).
    public func releasePublicationLock() { database.releasePublicationLock() }

    /// The delete record of an entry (only its key, with `op: delete`).
    static func deletion(type: String, key: String) -> String {
        var o: [String: Any] = ["type": type, "op": "delete"]
        if type == "usage" {
            let parts = key.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            if parts.count == 3 { o["person_ref"] = parts[0]; o["program"] = parts[1]; o["period"] = parts[2] }
        } else if let field = ["program": "code", "device": "device_id", "person": "person_ref", "card": "card_number"][type] {
            o[field] = key
        }
        return canonical(o)
    }

    /// Publishes the region's next snapshot when anything changed (or a full is due); nil when
    /// nothing did. `forceFull` publishes a full whatever the state.
    ///
    /// A delta costs what changed, not the region's size: it reads the roster entries changed
    /// since the latest publication's mark and recomputes S only for the persons they or the
    /// records since name. A full (daily, when the deltas since the last full outgrow it, on
    /// a program change, or when no mark is kept) recomputes everything.
    @discardableResult
    public func publish(forceFull: Bool = false) throws -> Publication? {
        try database.holdPublicationLock()
        return try database.publishing { try publishHoldingLock(forceFull: forceFull) }
    }

    func publishHoldingLock(forceFull: Bool) throws -> Publication? {
        let region = configuration.region
        let instant = now()
        let cut = Timestamp.string(try settledCut())
        let history = try database.engine.read { c in
            try c.rows("SELECT snapshot_id, kind, issued_at, bytes FROM hub_snapshot WHERE region = ? ORDER BY seq", region)
                .map { (id: try $0.text("snapshot_id"), kind: try $0.text("kind"), issuedAt: try $0.text("issued_at"), bytes: try $0.int("bytes")) }
        }
        let previous = try database.engine.read { c in
            try c.row("SELECT roster_seq, record_rowid, cut FROM publisher_mark WHERE region = ?", region)
                .map { Mark(rosterSeq: try $0.int("roster_seq"), recordRowid: try $0.int("record_rowid"), cut: try $0.text("cut")) }
        }
        let latest = history.last?.id
        var publication = try publishPlanned(forceFull: forceFull, instant: instant, cut: cut, history: history, previous: previous)
        if var p = publication {
            // Records left out of S (amounts out of bounds): since the previous publication, and
            // all of them again with every full, so the operators hear of them at least daily.
            p.leftOut = try database.engine.read { c in
                try c.int("""
                    SELECT COUNT(*) FROM hub_record WHERE rowid > ? AND ((kind = 'medical_subsidy' AND subsidy_fen NOT BETWEEN 0 AND 99999999)
                      OR (kind = 'subsidy_reversal' AND amount_fen NOT BETWEEN 0 AND 99999999))
                    """, p.snapshot.kind == "full" ? 0 : previous?.recordRowid ?? 0) ?? 0
            }
            publication = p
        }
        return publication
    }

    func publishPlanned(forceFull: Bool, instant: Date, cut: String, history: [(id: String, kind: String, issuedAt: String, bytes: Int64)],
                        previous: Mark?) throws -> Publication? {
        let region = configuration.region
        let latest = history.last?.id
        let lastFullIndex = history.lastIndex { $0.kind == "full" }
        let lastFull = lastFullIndex.map { history[$0] }
        let deltaBytesSinceFull = lastFullIndex.map { history[($0 + 1)...].reduce(0) { $0 + Int($1.bytes) } } ?? 0
        let fullDue = forceFull || latest == nil || lastFull == nil
            || (lastFull.flatMap { Timestamp.date($0.issuedAt) }.map { instant.timeIntervalSince($0) >= configuration.fullEvery } ?? true)

        if fullDue {
            return try publishStreamedFull(instant: instant, cut: cut, latest: latest)
        }
        var plan: Plan
        if let previous, let delta = try changes(since: previous, cut: cut),
           deltaBytesSinceFull + delta.bytes <= Int(lastFull?.bytes ?? 0) {
            plan = delta
        } else if try database.engine.read({ c in
            try c.int("SELECT COUNT(*) FROM published_entry WHERE region = ?", region) ?? 0
        }) > Int64(configuration.inMemoryEntries) {
            // Too large to hold: a full, written as a stream.
            return try publishStreamedFull(instant: instant, cut: cut, latest: latest)
        } else {
            let (state, over, mark) = try currentState(cut: cut)
            let fullSize = state.values.reduce(0) { $0 + $1.line.utf8.count + 1 }
            let everything = Array(state.values)
            plan = Plan(full: true, entries: everything, deleted: [], overLimit: over, mark: mark, replacesPublished: everything)
            // The whole state against what the kiosks hold: a delta unless it outgrows the full.
            var published: [String: String] = [:]
            try database.engine.read { c in
                try c.stream("SELECT type, key, line FROM published_entry WHERE region = ?", arguments: [.text(region)]) {
                    published["\(try $0.text("type"))|\(try $0.text("key"))"] = try $0.text("line")
                }
            }
            let changed = state.values.filter { published["\($0.type)|\($0.key)"] != $0.line }
            let deleted = published.keys.filter { state[$0] == nil }.sorted()
            let delta = Plan(full: false, entries: changed, deleted: deleted, overLimit: over, mark: mark, replacesPublished: everything)
            if deltaBytesSinceFull + delta.bytes <= fullSize { plan = delta }
        }
        if !plan.full && plan.entries.isEmpty && plan.deleted.isEmpty {
            // Nothing the kiosks hold moved: remember how far this look read.
            _ = try database.engine.write { c in try commit(plan, c) }
            return nil
        }

        let id = Self.snapshotID(region: region, at: instant)
        if let latest, !(id > latest) { throw PublisherError.clockBehind(newID: id, latest: latest) }
        var header: [String: Any] = [
            "format": "benefit-snapshot", "format_version": 2, "snapshot_id": id, "kind": plan.full ? "full" : "delta",
            "region": region, "issued_at": Timestamp.string(instant), "expires_at": Timestamp.string(instant.addingTimeInterval(configuration.validity)),
            "settled_through": cut, "authority_key_id": configuration.authorityKeyID,
        ]
        header["base_snapshot_id"] = plan.full ? NSNull() : latest
        let staging = database.shelf.appendingPathComponent(".staging-\(id).jsonl")
        try FileManager.default.createDirectory(at: database.shelf, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: staging) }
        let writer = try SnapshotWriter(url: staging, header: header, authorityKey: configuration.authorityKey)
        // Programs first, then devices, persons, cards and usage: readers may rely on programs being known.
        let order = ["program": 0, "device": 1, "person": 2, "card": 3, "usage": 4]
        for e in plan.entries.sorted(by: { ((order[$0.type] ?? 9), $0.key) < ((order[$1.type] ?? 9), $1.key) }) { try writer.addRaw(e.line) }
        for k in plan.deleted {
            let parts = k.split(separator: "|", maxSplits: 1).map(String.init)
            try writer.addRaw(Self.deletion(type: parts[0], key: parts.count > 1 ? parts[1] : ""))
        }
        try writer.finish()
        // The snapshot's row and what the kiosks now hold, in one transaction: a publisher
        // killed at any point leaves either both or neither.
        let raised = Mutex<[OverLimit]>([])
        let snapshot = try database.publishSnapshot(file: staging, now: instant, plannedOn: .some(latest)) { c in
            let fresh = try commit(plan, c)
            raised.withLock { $0 = fresh }
        }
        try prune(now: instant)
        return Publication(snapshot: snapshot, records: plan.entries.count + plan.deleted.count, overLimit: raised.withLock { $0 },
                           recomputed: plan.recomputed)
    }

    /// S per person, program and period of the persons in the region's roster, in person
    /// order: every stored subsidy (flagged ones too) less stored reversals, received at or
    /// before the cut.
    static let regionUsageSQL = """
        SELECT person_ref, program, period, CAST(SUM(amount) AS BIGINT) AS used FROM (
            SELECT person_ref, program, period, subsidy_fen AS amount FROM hub_record
                WHERE kind = 'medical_subsidy' AND received_at <= ? AND subsidy_fen BETWEEN 0 AND 99999999
            UNION ALL
            SELECT s.person_ref, s.program, s.period, -r.amount_fen FROM hub_record r JOIN hub_record s ON s.record_id = r.reverses
                WHERE r.kind = 'subsidy_reversal' AND r.received_at <= ? AND r.amount_fen BETWEEN 0 AND 99999999
                  AND s.subsidy_fen BETWEEN 0 AND 99999999) AS u
        WHERE EXISTS (SELECT 1 FROM roster_entry e WHERE e.region = ? AND e.type = 'person' AND e.key = u.person_ref)
        GROUP BY person_ref, program, period ORDER BY person_ref, program, period
        """

    /// A full (daily, forced, or the first), written as a stream: the roster's lines and S
    /// read through cursors in one read transaction and written to the file as they come,
    /// then what the kiosks now hold read back from that file into `published_entry`, in the
    /// transaction that publishes it. Memory stays flat whatever the region's size (issue 12).
    func publishStreamedFull(instant: Date, cut: String, latest: String?) throws -> Publication {
        let region = configuration.region
        let id = Self.snapshotID(region: region, at: instant)
        if let latest, !(id > latest) { throw PublisherError.clockBehind(newID: id, latest: latest) }
        let header: [String: Any] = [
            "format": "benefit-snapshot", "format_version": 2, "snapshot_id": id, "kind": "full",
            "region": region, "issued_at": Timestamp.string(instant), "expires_at": Timestamp.string(instant.addingTimeInterval(configuration.validity)),
            "settled_through": cut, "authority_key_id": configuration.authorityKeyID, "base_snapshot_id": NSNull(),
        ]
        let staging = database.shelf.appendingPathComponent(".staging-\(id).jsonl")
        try FileManager.default.createDirectory(at: database.shelf, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: staging) }
        let writer = try SnapshotWriter(url: staging, header: header, authorityKey: configuration.authorityKey)
        var count = 0
        var over: [OverLimit] = []
        let mark: Mark = try verified { v in try database.engine.read { c in
            var mark = try Self.readMark(c)
            mark.cut = cut
            // Programs first, then devices, persons, cards and usage: readers may rely on programs being known.
            let limits = Self.limits(try c.rows("SELECT type, key, line FROM roster_entry WHERE region = ? AND type = 'program'", region)
                .map { (try $0.text("type"), try $0.text("key"), try $0.text("line")) })
            for type in ["program", "device", "person", "card"] {
                try c.stream("SELECT key, line FROM roster_entry WHERE region = ? AND type = ? ORDER BY key", arguments: [.text(region), .text(type)]) {
                    let line = try $0.text("line")
                    // Issue 21 item 1: only what the verified changes say is signed.
                    try v?.check(region: region, type: type, key: try $0.text("key"), line: line)
                    try writer.addRaw(line)
                    count += 1
                }
            }
            guard count > 0 else { throw PublisherError.emptyRoster(region) }
            if let v, try v.count(region: region) != count {
                throw RosterArchiveError.mismatch(region: region, "the database holds \(count) entries, the verified changes \(try v.count(region: region))")
            }
            try c.stream(Self.regionUsageSQL, arguments: [.text(cut), .text(cut), .text(region)]) { row in
                let person = try row.text("person_ref"), program = try row.text("program"), period = try row.text("period")
                let used = max(0, try row.int("used"))
                try writer.addRaw(Self.usageLine(person: person, program: program, period: period, used: used))
                count += 1
                if let limit = limits[program], used > limit {
                    over.append(OverLimit(personRef: person, program: program, period: period, usedFen: used, limitFen: limit))
                }
            }
            return mark
        } }
        try writer.finish()
        let plan = Plan(full: true, entries: [], deleted: [], overLimit: over, mark: mark, replacesPublished: nil)
        let raised = Mutex<[OverLimit]>([])
        let snapshot = try database.publishSnapshot(file: staging, now: instant, plannedOn: .some(latest)) { c in
            // What the kiosks now hold is what the file says, read back from it.
            try c.execute("DELETE FROM published_entry WHERE region = ?", region)
            try Self.insertPublished(from: staging, region: region, c)
            let fresh = try commit(plan, c)
            raised.withLock { $0 = fresh }
        }
        try prune(now: instant)
        return Publication(snapshot: snapshot, records: count, overLimit: raised.withLock { $0 }, recomputed: true)
    }

    /// Every record line of a snapshot file into `published_entry`, a few hundred rows a statement.
    static func insertPublished(from file: URL, region: String, _ c: any SQLConnection) throws {
        var rows: [[SQLValue]] = []
        func flush() throws {
            try c.executeChunked(rows, per: 250) { "INSERT INTO published_entry (region, type, key, line) VALUES \($0)" }
            rows.removeAll(keepingCapacity: true)
        }
        try LineReader.each(file) { bytes in
            guard let o = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any], let type = o["type"] as? String,
                  type != "header", type != "trailer" else { return }
            let key: String
            if type == "usage" {
                key = "\(o["person_ref"] as? String ?? "")|\(o["program"] as? String ?? "")|\(o["period"] as? String ?? "")"
            } else {
                guard let k = RosterChange.key(type: type, o) else { return }
                key = k
            }
            rows.append([.text(region), .text(type), .text(key), .text(String(decoding: bytes, as: UTF8.self))])
            if rows.count >= 250 { try flush() }
        }
        try flush()
    }

    /// What the kiosks now hold (the next delta is made against it), the mark, and the
    /// over-limit cases not raised before.
    func commit(_ plan: Plan, _ c: any SQLConnection) throws -> [OverLimit] {
        let region = configuration.region
        if let everything = plan.replacesPublished {
            try c.execute("DELETE FROM published_entry WHERE region = ?", region)
            try c.executeChunked(everything.map { [.text(region), .text($0.type), .text($0.key), .text($0.line)] }) {
                "INSERT INTO published_entry (region, type, key, line) VALUES \($0)"
            }
        } else {
            for e in plan.entries {
                try c.execute("""
                    INSERT INTO published_entry (region, type, key, line) VALUES (?, ?, ?, ?)
                    ON CONFLICT (region, type, key) DO UPDATE SET line = excluded.line
                    """, region, e.type, e.key, e.line)
            }
            for k in plan.deleted {
                let parts = k.split(separator: "|", maxSplits: 1).map(String.init)
                try c.execute("DELETE FROM published_entry WHERE region = ? AND type = ? AND key = ?", region, parts[0], parts.count > 1 ? parts[1] : "")
            }
        }
        try c.execute("""
            INSERT INTO publisher_mark (region, roster_seq, record_rowid, cut) VALUES (?, ?, ?, ?)
            ON CONFLICT (region) DO UPDATE SET roster_seq = excluded.roster_seq, record_rowid = excluded.record_rowid, cut = excluded.cut
            """, region, plan.mark.rosterSeq, plan.mark.recordRowid, plan.mark.cut)
        var fresh: [OverLimit] = []
        for o in plan.overLimit {
            let known = try c.int("SELECT used_fen FROM publisher_alert WHERE person_ref = ? AND program = ? AND period = ?", o.personRef, o.program, o.period)
            if known == nil || known! < o.usedFen {
                try c.execute("""
                    INSERT INTO publisher_alert (person_ref, program, period, used_fen, limit_fen, raised_at) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (person_ref, program, period) DO UPDATE SET used_fen = excluded.used_fen, raised_at = excluded.raised_at
                    """, o.personRef, o.program, o.period, o.usedFen, o.limitFen, plan.mark.cut)
                fresh.append(o)
            }
        }
        return fresh
    }

    /// Whether a roster change applied since the latest publication is one kiosks must act on
    /// at once (sync spec §5: published within 60 seconds).
    public func urgentPending() throws -> Bool {
        try database.engine.read { c in
            let region = configuration.region
            guard let last = try c.text("SELECT MAX(published_at) FROM hub_snapshot WHERE region = ?", region) else {
                return try c.exists("SELECT 1 FROM roster_change WHERE region = ? AND urgent = 1", region)
            }
            return try c.exists("SELECT 1 FROM roster_change WHERE region = ? AND urgent = 1 AND applied_at >= ?", region, last)
        }
    }
}
