import Crypto
import KioskProtocol
import Foundation
import HubRules
import Synchronization

/// One published snapshot file as the hub serves it (sync spec §2–3).
public struct PublishedSnapshot: Sendable, Equatable {
    /// The header's `snapshot_id`: ids grow strictly per region.
    public var snapshotID: String
    /// The region it is published for.
    public var region: String
    /// `full` or `delta`.
    public var kind: String
    /// The snapshot a delta applies to; nil for a full.
    public var baseSnapshotID: String?
    /// The header's `issued_at` (RFC 3339).
    public var issuedAt: String
    /// The file's size in bytes.
    public var bytes: Int64
    /// Lowercase hex of the whole file.
    public var sha256: String
    /// Where the file lies on the hub's disk.
    public var file: String

    init(_ r: SQLRow) throws {
        snapshotID = try r.text("snapshot_id"); region = try r.text("region"); kind = try r.text("kind")
        baseSnapshotID = try r.optionalText("base_snapshot_id"); issuedAt = try r.text("issued_at"); bytes = try r.int("bytes")
        sha256 = try r.text("sha256"); file = try r.text("file")
    }

    /// Its path on the hub, as a manifest step names it.
    public var path: String { "/v1/regions/\(region)/snapshots/\(snapshotID)" }
}

/// Why a file cannot be put on the shelf.
public enum PublishError: Error, Equatable, CustomStringConvertible {
    /// The file could not be read or copied beside the shelf.
    case unreadable(String)
    /// The first line is not a valid snapshot header.
    case badHeader(String)
    /// This snapshot id is published already, with other bytes.
    case alreadyPublished(String)
    /// The id does not sort after the region's latest (snapshot ids grow strictly).
    case notNewer(snapshotID: String, latest: String)
    /// A delta whose base is not published here for its region.
    case unknownBase(String)
    /// Another publication committed since this one was planned (two publishers at once):
    /// nothing is published; the next look plans again.
    case raced(expected: String?, latest: String?)

    /// Why the file was not published, in words.
    public var description: String {
        switch self {
        case .unreadable(let why): return "cannot read the snapshot file: \(why)"
        case .badHeader(let why): return "the snapshot's header: \(why)"
        case .alreadyPublished(let id): return "\(id) is already published with other content"
        case .notNewer(let id, let latest): return "\(id) is not newer than the region's latest \(latest) (snapshot ids grow strictly)"
        case .unknownBase(let id): return "the delta's base \(id) is not published here"
        case .raced(let e, let l): return "another publication (\(l ?? "none")) committed since this one was planned on \(e ?? "nothing"): try again"
        }
    }
}

/// A manifest (sync spec §2): the steps from what a kiosk holds to the latest.
public struct SyncManifest: Sendable, Equatable {
    /// The region asked for.
    public var region: String
    /// The region's newest published snapshot id.
    public var latest: String
    /// The files to fetch in order, oldest first; empty when the kiosk holds `latest`.
    public var steps: [PublishedSnapshot]

    /// The manifest as the hub sends it: `region`, `latest` and each step with its `path`.
    public var json: [UInt8] {
        var out = Array(#"{"region":"#.utf8)
        JSONText.appendString(region, to: &out)
        out += Array(#","latest":"#.utf8)
        JSONText.appendString(latest, to: &out)
        out += Array(#","steps":["#.utf8)
        for (i, s) in steps.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out += Array(#"{"snapshot_id":"#.utf8); JSONText.appendString(s.snapshotID, to: &out)
            out += Array(#","kind":"#.utf8); JSONText.appendString(s.kind, to: &out)
            out += Array(#","base_snapshot_id":"#.utf8)
            if let b = s.baseSnapshotID { JSONText.appendString(b, to: &out) } else { out += Array("null".utf8) }
            out += Array(#","issued_at":"#.utf8); JSONText.appendString(s.issuedAt, to: &out)
            out += Array(",\"bytes\":\(s.bytes),\"sha256\":".utf8); JSONText.appendString(s.sha256, to: &out)
            out += Array(#","path":"#.utf8); JSONText.appendString(s.path, to: &out)
            out.append(UInt8(ascii: "}"))
        }
        out += Array("]}".utf8)
        return out
    }
}

extension HubDatabase {
    /// Puts a signed snapshot file on the shelf and in the table, so kiosks can sync it.
    /// The hub verifies no signature (it holds no authority key; the kiosk's installer
    /// decides); it checks the header, that ids grow strictly per region and that a delta's
    /// base is published here. Publishing the same bytes again is a no-op.
    /// `alongside` runs in the same write transaction as the row (the publisher's own state:
    /// what the kiosks now hold), so a publication is all there or not at all, whenever the
    /// process dies. Listeners on every hub process are told when it commits.
    @discardableResult
    /// `plannedOn` (the publisher's): the region's latest snapshot when the publication was
    /// planned; if another committed since, nothing is published (`raced`).
    public func publishSnapshot(file: URL, now: Date, plannedOn: String?? = nil,
                                alongside: (any SQLConnection) throws -> Void = { _ in }) throws -> PublishedSnapshot {
        let header: [String: Any]
        let digest: String
        let size: Int64
        // One pass over the file: hashed and copied beside the shelf at once, so the write
        // transaction below only renames it into place (a copy of hundreds of MB inside it
        // would hold up every batch upload meanwhile).
        let partial = shelf.appendingPathComponent(".publish-\(UUID().uuidString).partial")
        var kept = false
        defer { if !kept { try? FileManager.default.removeItem(at: partial) } }
        do {
            let handle = try FileHandle(forReadingFrom: file)
            defer { try? handle.close() }
            try FileManager.default.createDirectory(at: shelf, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: partial.path, contents: nil) else { throw PublishError.unreadable("cannot write \(partial.path)") }
            let copy = try FileHandle(forWritingTo: partial)
            defer { try? copy.close() }
            var hasher = SHA256()
            var firstLine = FirstLine()
            var first: [UInt8]?
            var total: Int64 = 0
            while let chunk = try handle.read(upToCount: LineReader.chunk), !chunk.isEmpty {
                hasher.update(data: chunk)
                try copy.write(contentsOf: chunk)
                total += Int64(chunk.count)
                do { if let line = try firstLine.feed(chunk) { first = line } } catch {
                    throw PublishError.badHeader("the first line is longer than 64 KiB")
                }
            }
            guard total > 0, let first = first ?? firstLine.finish() else { throw PublishError.badHeader("the file is empty") }
            guard let object = try? JSONSerialization.jsonObject(with: Data(first)) as? [String: Any] else {
                throw PublishError.badHeader("the first line is not a JSON object")
            }
            try copy.synchronize()
            header = object
            digest = Hex.encode(hasher.finalize())
            size = total
        } catch let e as PublishError { throw e } catch { throw PublishError.unreadable("\(error)") }

        let (id, region, kind, issuedAt, base) = try Self.publicationFields(header)
        let target = shelf.appendingPathComponent("\(id).jsonl")
        return try engine.write { c in
            if let existing = try c.row("SELECT * FROM hub_snapshot WHERE snapshot_id = ?", id).map(PublishedSnapshot.init) {
                guard existing.sha256 == digest else { throw PublishError.alreadyPublished(id) }
                return existing
            }
            let latest = try c.text("SELECT snapshot_id FROM hub_snapshot WHERE region = ? ORDER BY seq DESC LIMIT 1", region)
            if case .some(let planned) = plannedOn, planned != latest { throw PublishError.raced(expected: planned, latest: latest) }
            if let latest, !(id > latest) {
                throw PublishError.notNewer(snapshotID: id, latest: latest)
            }
            if kind == "delta", let base, try !c.exists("SELECT 1 FROM hub_snapshot WHERE snapshot_id = ? AND region = ?", base, region) {
                throw PublishError.unknownBase(base)
            }
            // The file first (the whole copy renamed into place), the row after: a row never
            // names a file that is not whole.
            if FileManager.default.fileExists(atPath: target.path) { try FileManager.default.removeItem(at: target) }
            try FileManager.default.moveItem(at: partial, to: target)
            kept = true
            try c.execute("""
                INSERT INTO hub_snapshot (snapshot_id, region, kind, base_snapshot_id, issued_at, bytes, sha256, file, published_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, id, region, kind, kind == "delta" ? base : nil, issuedAt, size, digest, target.path,
                Timestamp.string(now, fractional: false))
            try alongside(c)
            try engine.notifyPublication(c)
            guard let row = try c.row("SELECT * FROM hub_snapshot WHERE snapshot_id = ?", id) else {
                throw HubDatabaseError.inconsistent("\(id) is not there after its insert")
            }
            return try PublishedSnapshot(row)
        }
    }

    /// The header's fields a publication needs, checked in order: `type`, `snapshot_id`,
    /// `region`, `kind`, `issued_at`, and a delta's `base_snapshot_id`.
    private static func publicationFields(_ header: [String: Any]) throws
        -> (id: String, region: String, kind: String, issuedAt: String, base: String?) {
        func text(_ key: String) throws -> String {
            guard let v = header[key] as? String, !v.isEmpty else { throw PublishError.badHeader("\(key) is missing or not a string") }
            return v
        }
        guard header["type"] as? String == "header" else { throw PublishError.badHeader("the first line is not a header") }
        let id = try text("snapshot_id"), region = try text("region"), kind = try text("kind"), issuedAt = try text("issued_at")
        guard Identifiers.isSyncName(id), Identifiers.isSyncName(region) else { throw PublishError.badHeader("snapshot_id or region has characters a URL cannot carry") }
        guard kind == "full" || kind == "delta" else { throw PublishError.badHeader("kind \(kind) is neither full nor delta") }
        guard Timestamp.date(issuedAt) != nil else { throw PublishError.badHeader("issued_at is not an RFC 3339 time") }
        let base = header["base_snapshot_id"] as? String
        if kind == "delta", base == nil { throw PublishError.badHeader("a delta without base_snapshot_id") }
        return (id, region, kind, issuedAt, base)
    }

    /// The snapshot `id` as published for `region` (sync spec §3: the file a kiosk fetches);
    /// nil when it is not published there.
    public func publishedSnapshot(_ id: String, region: String) throws -> PublishedSnapshot? {
        try engine.read { c in
            try c.row("SELECT * FROM hub_snapshot WHERE snapshot_id = ? AND region = ?", id, region).map(PublishedSnapshot.init)
        }
    }

    /// The highest publication number: it changes whenever a snapshot is published.
    public func publicationMark() throws -> Int64 {
        try engine.read { c in try c.int("SELECT COALESCE(MAX(seq), 0) FROM hub_snapshot") ?? 0 }
    }

    /// Sync spec §2: nil when the region has nothing published; a manifest with no steps
    /// when `installed` is the latest; else a chain of deltas from `installed` when every
    /// link is here, otherwise the latest full and the deltas after it.
    public func manifest(region: String, installed: String?) throws -> SyncManifest? {
        try engine.read { c in
            let all = try c.rows("SELECT * FROM hub_snapshot WHERE region = ? ORDER BY seq", region).map(PublishedSnapshot.init)
            guard let latest = all.last else { return nil }
            if installed == latest.snapshotID { return SyncManifest(region: region, latest: latest.snapshotID, steps: []) }
            let byID = Dictionary(uniqueKeysWithValues: all.map { ($0.snapshotID, $0) })
            // Walk back from the latest along deltas.
            var chain: [PublishedSnapshot] = []
            var cursor: PublishedSnapshot? = latest
            while let step = cursor {
                chain.append(step)
                if step.kind == "full" { break }
                if let installed, step.baseSnapshotID == installed {
                    return SyncManifest(region: region, latest: latest.snapshotID, steps: chain.reversed())
                }
                cursor = step.baseSnapshotID.flatMap { byID[$0] }
            }
            // No chain from `installed`: the newest full and the deltas that lead from it to the latest.
            if let full = chain.last, full.kind == "full" {
                return SyncManifest(region: region, latest: latest.snapshotID, steps: chain.reversed())
            }
            // The latest's chain breaks before any full: the newest full alone (the kiosk asks again after).
            guard let full = all.last(where: { $0.kind == "full" }) else { return nil }
            return SyncManifest(region: region, latest: latest.snapshotID, steps: [full])
        }
    }
}

/// Wakes long polls when something is published (sync spec §2 `wait`), whichever process
/// published: one poller task reads the publication mark while anyone waits (every 0.5 s
/// on SQLite), and on PostgreSQL a LISTEN on `hub_publication` wakes it at once (the poll
/// then runs only every 5 s, in case the listening connection is down). A waiting request
/// is a suspended task, not a thread.
package final class PublicationWatch: Sendable {
    private let mark = Atomic<Int64>(0)
    private let polling = Atomic<Bool>(false)
    private let closing = Atomic<Bool>(false)
    private let database: HubDatabase
    private let pollEvery: Duration
    private let stopListening = Mutex<(@Sendable () -> Void)?>(nil)

    /// - Parameter pollEvery: how often the mark is read while anyone waits (nil: the engine's default).
    package init(database: HubDatabase, pollEvery: Duration? = nil) {
        self.database = database
        self.pollEvery = pollEvery ?? (database.kind == .postgres ? .seconds(5) : .milliseconds(500))
        mark.store((try? database.publicationMark()) ?? 0, ordering: .relaxed)
    }

    deinit { stopListening.withLock { $0?() } }

    /// Called after an in-process publication: waiters see it at once.
    func bump() { if let m = try? database.publicationMark() { mark.store(m, ordering: .releasing) } }

    package var current: Int64 { mark.load(ordering: .acquiring) }

    /// The hub is shutting down: long polls answer now instead of holding the shutdown up.
    package func close() {
        closing.store(true, ordering: .releasing)
        stopListening.withLock { $0?(); $0 = nil }
    }
    package var isClosing: Bool { closing.load(ordering: .acquiring) }

    /// Returns when the mark differs from `seen` or at `deadline`, whichever comes first.
    package func wait(since seen: Int64, until deadline: ContinuousClock.Instant) async {
        startPolling()
        while current == seen, ContinuousClock.now < deadline, !Task.isCancelled, !isClosing {
            try? await Task.sleep(for: min(.milliseconds(250), deadline - ContinuousClock.now))
        }
    }

    private func startPolling() {
        guard polling.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let database = self.database
        // A notification re-reads the mark (it says that, not what, was published).
        let stop = database.engine.publicationNotifications { [weak self] in
            guard let self else { return }
            BlockingWork.threads.submit { _ in self.bump() }
        }
        stopListening.withLock { $0 = stop }
        let every = pollEvery
        // Ends when the hub (and so this watch) is gone.
        Task.detached { [weak self] in
            while !Task.isCancelled {
                guard let watch = self, !watch.isClosing else { return }
                if let m = await BlockingWork.offload({ try? watch.database.publicationMark() }) { watch.mark.store(m, ordering: .releasing) }
                try? await Task.sleep(for: every)
            }
        }
    }
}
