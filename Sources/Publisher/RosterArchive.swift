import Crypto
import KioskProtocol
import Foundation
import GRDB
import Glibc
import HubStore

/// Why the publisher refuses to sign, or cannot keep its archive (issue 21 item 1).
public enum RosterArchiveError: Error, Equatable, CustomStringConvertible {
    /// The archive's folder is not the publisher's own (another user may write it).
    case folder(String)
    /// The digest chain over the archived changes does not hold.
    case chain(String)
    /// What the hub's database says of the roster is not what the verified changes say:
    /// somebody wrote the database who should not have. Nothing is signed.
    case mismatch(region: String, String)
    /// A certificate was asked for a key no verified change registered (or not active).
    case unregisteredKey(deviceID: String)
    /// A change is archived but the hub's database has not taken it yet (the next look does).
    case databaseBehind(String)

    /// The refusal in one line (for the publisher's ALERT).
    public var description: String {
        switch self {
        case .folder(let why): return "roster archive: \(why)"
        case .chain(let why): return "roster archive: the digest chain does not hold: \(why)"
        case .mismatch(let region, let why):
            return "region \(region): the database's roster differs from the verified roster changes (\(why)); nothing is signed"
        case .unregisteredKey(let id): return "device \(id): its key was not registered by a verified roster change, or it is not active"
        case .databaseBehind(let why): return "roster archive: \(why)"
        }
    }
}

/// The publisher's own record of the roster (issue 21 item 1: only signed inputs become
/// signatures). Every roster change it applied is kept here as the signed file it was, in a
/// folder only the publisher's Unix user can write, with a digest chain over them
/// (`chain`: one line per change, `seq change_id region sha256 chain`, where `chain` is the
/// SHA-256 of the previous line's `chain` and this line's other fields). `verified.sqlite`,
/// beside them, is the state those files give, kept so that a check is a lookup, not a replay
/// of a province's roster; it is rebuilt from the files for any change it lacks.
///
/// Before it signs anything the publisher compares what it reads from the hub's database
/// with this record: an entry it would publish must be exactly the verified one, a full must
/// hold as many entries as the verified roster, a certificate's key must be a verified active
/// device's. Whoever writes the database can then delay publication, never forge it.
public final class RosterArchive: Sendable {
    /// The archive's folder (`--archive DIR`): the publisher's user's alone.
    public let folder: URL
    /// The roster keys, each bound to the regions it may change.
    public let trustedKeys: RosterKeys
    let store: DatabaseQueue
    private let changes: URL
    private let chainFile: URL

    /// Opens (or creates) the archive in `folder`, which must belong to this process's user
    /// and be writable by nobody else; recovers a change archived but not yet applied to
    /// `verified.sqlite` (a publisher killed in between).
    public init(folder: URL, trustedKeys: RosterKeys) throws {
        self.folder = folder
        self.trustedKeys = trustedKeys
        changes = folder.appendingPathComponent("changes", isDirectory: true)
        chainFile = folder.appendingPathComponent("chain")
        try Self.ownFolder(folder)
        try Self.ownFolder(changes)
        var config = Configuration()
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        config.busyMode = .timeout(30)
        store = try DatabaseQueue(path: folder.appendingPathComponent("verified.sqlite").path, configuration: config)
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE entry (region TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, line TEXT NOT NULL,
                    PRIMARY KEY (region, type, key)) WITHOUT ROWID;
                CREATE INDEX entry_key ON entry(type, key);
                CREATE TABLE applied (seq INTEGER PRIMARY KEY, change_id TEXT NOT NULL UNIQUE, region TEXT NOT NULL,
                    sha256 TEXT NOT NULL, chain TEXT NOT NULL);
                """)
        }
        try m.migrate(store)
        try locked { try recover() }
    }

    /// A folder of this user's alone: created 0700 when missing; refused when another user
    /// owns it or its group or others may write it.
    static func ownFolder(_ url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) {
            do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
                throw RosterArchiveError.folder("cannot create \(url.path): \(error)")
            }
        }
        var st = stat()
        guard lstat(url.path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw RosterArchiveError.folder("\(url.path) is not a folder") }
        guard st.st_uid == geteuid() else {
            throw RosterArchiveError.folder("\(url.path) belongs to uid \(st.st_uid), not to this publisher (uid \(geteuid())): chown it")
        }
        guard st.st_mode & 0o022 == 0 else {
            throw RosterArchiveError.folder("\(url.path) may be written by others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 700 it")
        }
    }

    // MARK: the chain

    struct Link: Equatable {
        var seq: Int64
        var changeID: String
        var region: String
        var sha256: String
        var chain: String
        var line: String { "\(seq) \(changeID) \(region) \(sha256) \(chain)" }
        var fileName: String { String(format: "%08lld-", seq) + changeID + ".jsonl" }
    }

    static let genesis = String(repeating: "0", count: 64)

    static func link(after previous: String, seq: Int64, changeID: String, region: String, sha256: String) -> Link {
        let digest = SHA256.hash(data: Data("\(previous) \(seq) \(changeID) \(region) \(sha256)".utf8))
        return Link(seq: seq, changeID: changeID, region: region, sha256: sha256, chain: Hex.encode(digest))
    }

    /// The chain file, every link recomputed. A last line without its newline is an append a
    /// crash cut short (its transaction never committed): ignored, and with `repair` cut off.
    func readChain(repair: Bool = false) throws -> [Link] {
        guard FileManager.default.fileExists(atPath: chainFile.path) else { return [] }
        var text = try String(contentsOf: chainFile, encoding: .utf8)
        if !text.isEmpty, !text.hasSuffix("\n") {
            let kept = text.lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
            text = String(text[..<kept])
            if repair { guard truncate(chainFile.path, off_t(text.utf8.count)) == 0 else { throw RosterArchiveError.chain("cannot cut the torn last line") } }
        }
        var links: [Link] = []
        var previous = Self.genesis
        for text in text.split(separator: "\n") {
            let f = text.split(separator: " ").map(String.init)
            guard f.count == 5, let seq = Int64(f[0]), seq == Int64(links.count + 1) else {
                throw RosterArchiveError.chain("line \(links.count + 1) is not `seq change_id region sha256 chain` in order")
            }
            let link = Self.link(after: previous, seq: seq, changeID: f[1], region: f[2], sha256: f[3])
            guard link.chain == f[4] else { throw RosterArchiveError.chain("link \(seq) (\(f[1])) does not follow from the one before") }
            links.append(link)
            previous = link.chain
        }
        return links
    }

    /// `verified.sqlite` against the chain: its changes must be the chain's first ones; any
    /// the chain has beyond them (archived, then killed before applying) are applied now
    /// from their files, verified again.
    @discardableResult
    func recover() throws -> [Link] {
        let links = try readChain(repair: true)
        let applied = try store.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, change_id, region, sha256, chain FROM applied ORDER BY seq").map {
                Link(seq: $0["seq"], changeID: $0["change_id"], region: $0["region"], sha256: $0["sha256"], chain: $0["chain"])
            }
        }
        guard applied.count <= links.count, Array(links.prefix(applied.count)) == applied else {
            throw RosterArchiveError.chain("verified.sqlite holds \(applied.count) changes that are not the chain's first \(applied.count)")
        }
        for link in links.dropFirst(applied.count) {
            let file = changes.appendingPathComponent(link.fileName)
            let verified = try RosterChange.verify(RosterChange.lines(of: file), trustedKeys: trustedKeys)
            guard verified.changeID == link.changeID, verified.sha256 == link.sha256, verified.region == link.region else {
                throw RosterArchiveError.chain("\(link.fileName) is not the change its link names")
            }
            try store.write { db in
                _ = try Self.applyEntries(db, region: link.region, RosterChange.lines(of: file))
                try db.execute(sql: "INSERT INTO applied (seq, change_id, region, sha256, chain) VALUES (?, ?, ?, ?, ?)",
                               arguments: [link.seq, link.changeID, link.region, link.sha256, link.chain])
            }
        }
        return links
    }

    /// Every archived file read again against its link (`hub-publisher archive-verify`):
    /// the number of changes checked.
    public func verifyFiles() throws -> Int {
        let links = try readChain()
        for link in links {
            let verified = try RosterChange.verify(RosterChange.lines(of: changes.appendingPathComponent(link.fileName)), trustedKeys: trustedKeys)
            guard verified.changeID == link.changeID, verified.sha256 == link.sha256 else {
                throw RosterArchiveError.chain("\(link.fileName) no longer matches its link")
            }
        }
        return links.count
    }

    // MARK: applying a change

    /// A verified change's entries applied to `verified.sqlite` (the loader's rules were
    /// applied while reading; one region's change cannot touch another region's entries).
    static func applyEntries(_ db: Database, region: String, _ lines: RosterChange.Lines) throws -> (RosterChange.Verified, urgent: Bool) {
        var urgent = false
        let other = try db.cachedStatement(sql: "SELECT region FROM entry WHERE type = ? AND key = ? AND region <> ? LIMIT 1")
        let put = try db.cachedStatement(sql: "INSERT OR REPLACE INTO entry (region, type, key, line) VALUES (?, ?, ?, ?)")
        let drop = try db.cachedStatement(sql: "DELETE FROM entry WHERE region = ? AND type = ? AND key = ?")
        var failure: Error?
        let verified = try RosterChange.entries(lines) { e in
            do {
                urgent = urgent || e.urgent
                if e.type != "program", let found = try String.fetchOne(other, arguments: [e.type, e.key, region]) {
                    throw RosterChange.Refusal.otherRegion(type: e.type, key: e.key, region: found)
                }
                if let line = e.line { try put.execute(arguments: [region, e.type, e.key, line]) } else { try drop.execute(arguments: [region, e.type, e.key]) }
            } catch {
                failure = error
                throw error
            }
        }
        if let failure { throw failure }
        return (verified, urgent)
    }

    /// Verifies a signed roster change (`file`: an inbox entry, or the operator's file),
    /// keeps it in the archive and the chain, and applies it to the verified roster, in one
    /// transaction of `verified.sqlite`. The file is copied first and the copy verified, so a
    /// file changed meanwhile is refused. Then the hub's database gets it (`database`), and a
    /// copy goes on the shelf (`roster-changes/`) for the other publishers' archives.
    /// A change the archive holds but the database lacks (a publisher killed in between) is
    /// applied to the database and reported applied; held by both, it is `alreadyApplied`.
    /// `verifiedFirst` hears of the first pass's end (a long import says so before it writes).
    /// One process at a time works on the archive (an exclusive lock on `lock` in the folder).
    @discardableResult
    public func apply(file: URL, to database: HubDatabase, now: Date,
                      verifiedFirst: (RosterChange.Verified) -> Void = { _ in }) throws -> (RosterChange.Verified, urgent: Bool) {
        try locked { try applyLocked(file: file, to: database, now: now, verifiedFirst: verifiedFirst) }
    }

    /// The archive's exclusive lock (flock on `lock`): `run`, `roster-import` and a second
    /// publisher's process never interleave their work on one folder.
    func locked<T>(_ body: () throws -> T) throws -> T {
        let fd = open(folder.appendingPathComponent("lock").path, O_RDWR | O_CREAT, 0o600)
        guard fd >= 0 else { throw RosterArchiveError.folder("cannot open the archive's lock: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw RosterArchiveError.folder("cannot lock the archive: \(String(cString: strerror(errno)))") }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    func applyLocked(file: URL, to database: HubDatabase?, now: Date,
                     verifiedFirst: (RosterChange.Verified) -> Void = { _ in }) throws -> (RosterChange.Verified, urgent: Bool) {
        // Whatever an earlier process left half done first (a link without its entries).
        let links = try recover()
        let first = try RosterChange.verify(RosterChange.lines(of: file), trustedKeys: trustedKeys)
        verifiedFirst(first)
        if try store.read({ db in try Bool.fetchOne(db, sql: "SELECT 1 FROM applied WHERE change_id = ?", arguments: [first.changeID]) }) == true {
            guard let database else { throw RosterChange.Refusal.alreadyApplied(first.changeID) }
            guard !(try database.rosterChangeApplied(first.changeID)) else { throw RosterChange.Refusal.alreadyApplied(first.changeID) }
            try reconcileLocked(database, now: now)
            return (first, urgent: false)
        }
        let incoming = folder.appendingPathComponent(".incoming.jsonl")
        try? FileManager.default.removeItem(at: incoming)
        try FileManager.default.copyItem(at: file, to: incoming)
        defer { try? FileManager.default.removeItem(at: incoming) }
        let lines = RosterChange.lines(of: incoming)
        guard try RosterChange.verify(lines, trustedKeys: trustedKeys) == first else { throw RosterChange.Refusal.digestMismatch }
        // The chain is the archive's record: the new link follows its last one.
        let link = Self.link(after: links.last?.chain ?? Self.genesis, seq: Int64(links.count + 1), changeID: first.changeID,
                             region: first.region, sha256: first.sha256)
        let result: (RosterChange.Verified, urgent: Bool) = try store.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM applied WHERE change_id = ?", arguments: [first.changeID]) == true {
                throw RosterChange.Refusal.alreadyApplied(first.changeID)
            }
            let applied = try Self.applyEntries(db, region: first.region, lines)
            guard applied.0 == first else { throw RosterChange.Refusal.digestMismatch }
            // Archived and chained before the transaction commits: a publisher killed (or a
            // commit failing) in between leaves the link without its entries, applied by the
            // next `recover`.
            try Self.durable(incoming)
            guard rename(incoming.path, changes.appendingPathComponent(link.fileName).path) == 0 else {
                throw RosterArchiveError.folder("cannot archive \(link.fileName): \(String(cString: strerror(errno)))")
            }
            try Self.durable(changes)
            try Self.append(link.line + "\n", to: chainFile)
            try Self.durable(folder)
            try db.execute(sql: "INSERT INTO applied (seq, change_id, region, sha256, chain) VALUES (?, ?, ?, ?, ?)",
                           arguments: [link.seq, link.changeID, link.region, link.sha256, link.chain])
            return applied
        }
        if let database {
            share(changes.appendingPathComponent(link.fileName), changeID: first.changeID, on: database)
            do { try reconcileLocked(database, now: now) } catch {
                // Archived: the hub's database gets it at the next look.
                throw RosterArchiveError.databaseBehind("\(first.changeID) is archived; the hub's database did not take it yet: \(error)")
            }
        }
        return result
    }

    /// A copy of an archived change on the shelf, for the other publishers (best effort: the
    /// one that lacks it refuses to publish until it has it, never signs without it).
    func share(_ file: URL, changeID: String, on database: HubDatabase) {
        let shared = database.shelf.appendingPathComponent("roster-changes", isDirectory: true)
        let target = shared.appendingPathComponent(changeID + ".jsonl")
        guard !FileManager.default.fileExists(atPath: target.path) else { return }
        try? FileManager.default.createDirectory(at: shared, withIntermediateDirectories: true)
        let staging = shared.appendingPathComponent(".\(changeID).\(getpid()).part")
        guard (try? FileManager.default.copyItem(at: file, to: staging)) != nil else { return }
        if rename(staging.path, target.path) != 0 { try? FileManager.default.removeItem(at: staging) }
    }

    /// What became of an inbox entry.
    public struct InboxOutcome: Sendable, Equatable {
        /// The entry's `change_id`.
        public var changeID: String
        /// Nil: applied; else why it was refused (an operator alert).
        public var refusal: String?
        /// Whether the change holds an urgent entry (a person suspended or revoked, a card lost,
        /// revoked or replaced): publish at once. False when not applied.
        public var urgent: Bool
        /// Left in the inbox for the next look (the database failed meanwhile), or archived
        /// with the database to catch up: why.
        public var pending: String? = nil
    }

    /// The roster changes hubs queued (`POST …/roster-changes`, 202), each verified again,
    /// archived and applied, or refused; taken out of the inbox either way, oldest first.
    /// An entry that cannot be read whole (a part missing) is refused; a database failure
    /// leaves the entry for the next look. Call it only while holding the publication lock
    /// (one publisher empties the inbox; the others take the changes from the shelf).
    public func pullInbox(_ database: HubDatabase, now: Date) throws -> [InboxOutcome] {
        try locked {
            var outcomes: [InboxOutcome] = []
            for entry in try database.rosterInbox() {
                let file = folder.appendingPathComponent(".inbox-\(entry.id).jsonl")
                defer { try? FileManager.default.removeItem(at: file) }
                do {
                    try database.writeInboxEntry(entry.id, to: file)
                    let (_, urgent) = try applyLocked(file: file, to: database, now: now)
                    outcomes.append(InboxOutcome(changeID: entry.changeID, refusal: nil, urgent: urgent))
                } catch let refusal as RosterChange.Refusal {
                    outcomes.append(InboxOutcome(changeID: entry.changeID, refusal: refusal.description, urgent: false))
                } catch let behind as RosterArchiveError {
                    if case .databaseBehind(let why) = behind {
                        outcomes.append(InboxOutcome(changeID: entry.changeID, refusal: nil, urgent: false, pending: why))
                    } else { throw behind }
                } catch HubDatabaseError.inconsistent(let why) {
                    outcomes.append(InboxOutcome(changeID: entry.changeID, refusal: "the queued change cannot be read whole: \(why)", urgent: false))
                } catch {
                    outcomes.append(InboxOutcome(changeID: entry.changeID, refusal: nil, urgent: false, pending: "\(error)"))
                    continue
                }
                try database.dropInboxEntry(entry.id)
            }
            return outcomes
        }
    }

    /// The archive and the hub's database brought together, both ways:
    /// - every change the database holds that this archive lacks (another publisher applied
    ///   it), in the database's order, from the copy on the shelf, verified like any other;
    /// - every archived change the database lacks (a publisher killed between its archive and
    ///   the database, or a database restored from an older backup), in the archive's order.
    /// Anything still apart is left as it is: the check before publication refuses it.
    public func reconcile(_ database: HubDatabase, now: Date) throws {
        try locked { try reconcileLocked(database, now: now) }
    }

    func reconcileLocked(_ database: HubDatabase, now: Date) throws {
        let ordered = try database.engine.read { c in try c.texts("SELECT change_id FROM roster_change ORDER BY seq") }
        var archived = Set(try recover().map(\.changeID))
        let shared = database.shelf.appendingPathComponent("roster-changes", isDirectory: true)
        for id in ordered where !archived.contains(id) {
            let copy = shared.appendingPathComponent(id + ".jsonl")
            guard FileManager.default.fileExists(atPath: copy.path) else { break }
            _ = try applyLocked(file: copy, to: nil, now: now)
            archived.insert(id)
        }
        let known = Set(ordered)
        for link in try readChain() where !known.contains(link.changeID) {
            _ = try database.importRosterChange(RosterChange.lines(of: changes.appendingPathComponent(link.fileName)), trustedKeys: trustedKeys, now: now)
        }
    }

    static func durable(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw RosterArchiveError.folder("cannot open \(url.path) to sync it") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw RosterArchiveError.folder("fsync \(url.path): \(String(cString: strerror(errno)))") }
    }

    static func append(_ text: String, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
        guard fd >= 0 else { throw RosterArchiveError.folder("cannot open \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw RosterArchiveError.folder("cannot append to \(url.path): \(String(cString: strerror(errno)))")
        }
    }

    // MARK: the checks before signing

    /// Lookups in the verified roster within one read of it.
    public struct Reader {
        let db: Database
        let lineStatement: Statement
        /// The verified line of an entry, nil when no verified change holds it.
        public func line(region: String, type: String, key: String) throws -> String? {
            try String.fetchOne(lineStatement, arguments: [region, type, key])
        }
        /// How many entries the verified roster holds for `region`.
        public func count(region: String) throws -> Int {
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM entry WHERE region = ?", arguments: [region]) ?? 0
        }
        /// A database line that must be the verified one, or the publication is refused.
        public func check(region: String, type: String, key: String, line: String) throws {
            guard try self.line(region: region, type: type, key: key) == line else {
                throw RosterArchiveError.mismatch(region: region, "\(type) \(Self.masked(type: type, key: key)) is not what the verified changes say")
            }
        }
        /// A key that must not be in the verified roster (a delete the database says happened).
        public func checkAbsent(region: String, type: String, key: String) throws {
            guard try line(region: region, type: type, key: key) == nil else {
                throw RosterArchiveError.mismatch(region: region, "\(type) \(Self.masked(type: type, key: key)) is deleted in the database, not by a verified change")
            }
        }
        /// Card numbers and person refs in an alert show their ends only (issue 21 item 6).
        static func masked(type: String, key: String) -> String {
            switch type {
            case "card": return Masking.cardNumber(key)
            case "person": return Masking.personRef(key)
            default: return key
            }
        }
    }

    /// Runs `body` with lookups in the verified roster, all within one read of it.
    public func read<T>(_ body: (Reader) throws -> T) throws -> T {
        try store.read { db in
            try body(Reader(db: db, lineStatement: try db.cachedStatement(sql: "SELECT line FROM entry WHERE region = ? AND type = ? AND key = ?")))
        }
    }

    /// A device as the verified changes registered it (any region), for certificates.
    public func device(_ deviceID: String) throws -> Roster.Device? {
        let found = try store.read { db in
            try Row.fetchOne(db, sql: "SELECT region, line FROM entry WHERE type = 'device' AND key = ?", arguments: [deviceID])
        }
        guard let found else { return nil }
        return Roster.reading((found["region"], found["line"]))?[deviceID]
    }

    /// How many changes the archive holds.
    public func changeCount() throws -> Int {
        try store.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM applied") ?? 0 }
    }
}
