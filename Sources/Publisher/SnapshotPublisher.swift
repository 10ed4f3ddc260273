import Crypto
import Entitlements
import Foundation
import GRDB
import KioskStore
import SettlementHub

/// What the publisher signs with and how long its snapshots last (sync spec §5).
public struct PublisherConfiguration: Sendable {
    public var region: String
    public var authorityKeyID: String
    public var authorityKey: Curve25519.Signing.PrivateKey
    /// `expires_at` = `issued_at` + this (default 30 days).
    public var validity: TimeInterval = 30 * 86_400
    /// A full at least this often (default daily).
    public var fullEvery: TimeInterval = 86_400

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

public enum PublisherError: Error, Equatable, CustomStringConvertible {
    case key(String)
    case clockBehind(newID: String, latest: String)
    case emptyRoster(String)

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
    public var personRef: String
    public var program: String
    public var period: String
    public var usedFen: Int64
    public var limitFen: Int64
    public init(personRef: String, program: String, period: String, usedFen: Int64, limitFen: Int64) {
        self.personRef = personRef; self.program = program; self.period = period; self.usedFen = usedFen; self.limitFen = limitFen
    }
}

/// What one publication did.
public struct Publication: Sendable, Equatable {
    public var snapshot: PublishedSnapshot
    /// Entries written (a full: all; a delta: the changed and deleted).
    public var records: Int
    /// New over-limit cases raised by this publication.
    public var overLimit: [OverLimit]
}

/// The publisher (sync spec §5): from the stored roster and every stored record, the region's
/// next signed snapshot, a delta with only what changed since the latest or a full, put on
/// the hub's shelf. Holds the authority key; the hub process never does.
public final class SnapshotPublisher: Sendable {
    public let database: HubDatabase
    public let configuration: PublisherConfiguration
    let now: @Sendable () -> Date

    public init(database: HubDatabase, configuration: PublisherConfiguration, now: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.configuration = configuration
        self.now = now
    }

    static func canonical(_ o: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data(), as: UTF8.self)
    }

    /// The region's state as the next snapshot would hold it, by `type` and key, and the cut.
    func currentState(cut: String) throws -> (lines: [String: (type: String, key: String, line: String)], overLimit: [OverLimit]) {
        let region = configuration.region
        var lines: [String: (type: String, key: String, line: String)] = [:]
        var persons = Set<String>()
        var limits: [String: Int64] = [:]
        for e in try database.rosterLines(region: region) {
            lines["\(e.type)|\(e.key)"] = e
            if e.type == "person" { persons.insert(e.key) }
            if e.type == "program", let o = try? JSONSerialization.jsonObject(with: Data(e.line.utf8)) as? [String: Any],
               let limit = JSONInteger.value(o["limit_fen"]) {
                limits[e.key] = limit
            }
        }
        guard !lines.isEmpty else { throw PublisherError.emptyRoster(region) }
        // S per person, program and period: every stored subsidy (flagged ones too) less
        // stored reversals, received at or before the cut.
        let usage = try database.pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT person_ref, program, period, SUM(amount) AS used FROM (
                    SELECT person_ref, program, period, subsidy_fen AS amount FROM hub_record
                        WHERE kind = 'medical_subsidy' AND received_at <= ?
                    UNION ALL
                    SELECT s.person_ref, s.program, s.period, -r.amount_fen FROM hub_record r JOIN hub_record s ON s.record_id = r.reverses
                        WHERE r.kind = 'subsidy_reversal' AND r.received_at <= ?)
                GROUP BY person_ref, program, period ORDER BY person_ref, program, period
                """, arguments: [cut, cut])
        }
        var over: [OverLimit] = []
        for row in usage {
            let person: String = row["person_ref"], program: String = row["program"], period: String = row["period"]
            guard persons.contains(person) else { continue }
            let used = max(0, row["used"] as Int64)
            let key = "\(person)|\(program)|\(period)"
            lines["usage|\(key)"] = ("usage", key, Self.canonical(["type": "usage", "person_ref": person, "program": program,
                                                                  "period": period, "used_fen": used]))
            if let limit = limits[program], used > limit {
                over.append(OverLimit(personRef: person, program: program, period: period, usedFen: used, limitFen: limit))
            }
        }
        return (lines, over)
    }

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
    @discardableResult
    public func publish(forceFull: Bool = false) throws -> Publication? {
        let region = configuration.region
        let instant = now()
        let cut = Timestamp.string(instant)
        let (state, over) = try currentState(cut: cut)
        let published = try database.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT type, key, line FROM published_entry WHERE region = ?", arguments: [region])
                .reduce(into: [String: String]()) { $0["\($1["type"] as String)|\($1["key"] as String)"] = $1["line"] }
        }
        let history = try database.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT snapshot_id, kind, issued_at, bytes FROM hub_snapshot WHERE region = ? ORDER BY seq", arguments: [region])
        }
        let latest = history.last.map { $0["snapshot_id"] as String }
        let lastFull = history.last { $0["kind"] as String == "full" }
        let changed = state.filter { published[$0.key] != $0.value.line }.sorted { $0.key < $1.key }
        let deleted = published.keys.filter { state[$0] == nil }.sorted()
        let fullSize = state.values.reduce(0) { $0 + $1.line.utf8.count + 1 }
        let deltaBytesSinceFull: Int = {
            guard let lastFull, let i = history.lastIndex(where: { $0["snapshot_id"] as String == lastFull["snapshot_id"] as String }) else { return 0 }
            return history[(i + 1)...].reduce(0) { $0 + Int($1["bytes"] as Int64) }
        }()
        let thisDelta = changed.reduce(0) { $0 + $1.value.line.utf8.count + 1 } + deleted.count * 80
        let fullDue = forceFull || latest == nil || lastFull == nil
            || (lastFull.flatMap { Timestamp.date($0["issued_at"]) }.map { instant.timeIntervalSince($0) >= configuration.fullEvery } ?? true)
            || deltaBytesSinceFull + thisDelta > fullSize
        if !fullDue && changed.isEmpty && deleted.isEmpty { return nil }

        let id = Self.snapshotID(region: region, at: instant)
        if let latest, !(id > latest) { throw PublisherError.clockBehind(newID: id, latest: latest) }
        var header: [String: Any] = [
            "format": "benefit-snapshot", "format_version": 2, "snapshot_id": id, "kind": fullDue ? "full" : "delta",
            "region": region, "issued_at": cut, "expires_at": Timestamp.string(instant.addingTimeInterval(configuration.validity)),
            "settled_through": cut, "authority_key_id": configuration.authorityKeyID,
        ]
        header["base_snapshot_id"] = fullDue ? NSNull() : latest
        let staging = database.shelf.appendingPathComponent(".staging-\(id).jsonl")
        try FileManager.default.createDirectory(at: database.shelf, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: staging) }
        let writer = try SnapshotWriter(url: staging, header: header, authorityKey: configuration.authorityKey)
        var records = 0
        // Programs first, then devices, persons, cards and usage: readers may rely on programs being known.
        let order = ["program": 0, "device": 1, "person": 2, "card": 3, "usage": 4]
        func sorted<T>(_ items: [(String, T)]) -> [(String, T)] {
            items.sorted { (order[String($0.0.prefix { $0 != "|" })] ?? 9, $0.0) < (order[String($1.0.prefix { $0 != "|" })] ?? 9, $1.0) }
        }
        if fullDue {
            for (_, e) in sorted(state.map { ($0.key, $0.value) }) { try writer.addRaw(e.line); records += 1 }
        } else {
            for (_, e) in sorted(changed.map { ($0.key, $0.value) }) { try writer.addRaw(e.line); records += 1 }
            for k in deleted {
                let parts = k.split(separator: "|", maxSplits: 1).map(String.init)
                try writer.addRaw(Self.deletion(type: parts[0], key: parts.count > 1 ? parts[1] : ""))
                records += 1
            }
        }
        try writer.finish()
        let snapshot = try database.publishSnapshot(file: staging, now: instant)
        // What the kiosks now hold (the next delta is made against it), and the over-limit cases not raised before.
        let raised: [OverLimit] = try database.pool.write { db in
            try db.execute(sql: "DELETE FROM published_entry WHERE region = ?", arguments: [region])
            for e in state.values {
                try db.execute(sql: "INSERT INTO published_entry (region, type, key, line) VALUES (?, ?, ?, ?)", arguments: [region, e.type, e.key, e.line])
            }
            var fresh: [OverLimit] = []
            for o in over {
                let known = try Int64.fetchOne(db, sql: "SELECT used_fen FROM publisher_alert WHERE person_ref = ? AND program = ? AND period = ?",
                                               arguments: [o.personRef, o.program, o.period])
                if known == nil || known! < o.usedFen {
                    try db.execute(sql: """
                        INSERT INTO publisher_alert (person_ref, program, period, used_fen, limit_fen, raised_at) VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT (person_ref, program, period) DO UPDATE SET used_fen = excluded.used_fen, raised_at = excluded.raised_at
                        """, arguments: [o.personRef, o.program, o.period, o.usedFen, o.limitFen, cut])
                    fresh.append(o)
                }
            }
            return fresh
        }
        return Publication(snapshot: snapshot, records: records, overLimit: raised)
    }

    /// `<region>-<YYYYMMDD>-<HHMMSS>` in China Standard Time: ids grow with the clock.
    static func snapshotID(region: String, at date: Date) -> String {
        let t = Int64(date.timeIntervalSince1970.rounded(.down)) + 8 * 3600
        let days = t >= 0 ? t / 86400 : (t - 86399) / 86400
        let (y, m, d) = CivilCalendar.date(days: days)
        let s = t - days * 86400
        return region + "-" + String(format: "%04lld%02lld%02lld-%02lld%02lld%02lld", y, m, d, s / 3600, s / 60 % 60, s % 60)
    }

    /// Whether a roster change applied since the latest publication is one kiosks must act on
    /// at once (sync spec §5: published within 60 seconds).
    public func urgentPending() throws -> Bool {
        try database.pool.read { db in
            let last = try String.fetchOne(db, sql: "SELECT MAX(published_at) FROM hub_snapshot WHERE region = ?", arguments: [configuration.region])
            return try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM roster_change WHERE region = ? AND urgent = 1 AND (? IS NULL OR applied_at >= ?))
                """, arguments: [configuration.region, last, last])!
        }
    }
}
