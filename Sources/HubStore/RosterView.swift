import Foundation
import HubRules
import Synchronization

/// The hub's roster in flat memory (issue 21 item 5). A hub process no longer builds its
/// region's whole roster at start (1 GB and 23 s at 1,000,000 persons): programs (a region
/// holds a few) are kept whole; devices and cards are looked up in the database by key (the
/// `roster_entry_key` index) and kept in a bounded cache; the start roster (files and
/// options, `--snapshot`, `--device`) lies under the stored entries, as before.
///
/// The cache follows the roster changes: at most once a second (and at once when forced)
/// the hub looks at the newest change's number; the keys changed since are evicted (or the
/// whole cache, after a change larger than half of it). A lookup that began before an
/// eviction does not put what it read into the cache (an epoch guards it), so a cached entry
/// is never older than the last look.
package final class RosterView: Sendable {
    package struct State {
        var base: Roster
        var programs: [String: Roster.Program] = [:]
        /// nil inside: looked up, none (a card or device the roster does not hold).
        var devices: [String: Roster.Device?] = [:]
        var cards: [String: Roster.Card?] = [:]
        var epoch: UInt64 = 0
        var mark: Int64 = -1
        var checkedAt: ContinuousClock.Instant?
        var refreshing = false

        /// The roster was looked at less than `RosterView.lookEvery` before `now` and no look
        /// is under way: the cache may answer on its own.
        func isFresh(at now: ContinuousClock.Instant) -> Bool {
            guard !refreshing, let at = checkedAt else { return false }
            return now - at < RosterView.lookEvery
        }
    }

    /// How often the roster changes are looked at (at most; `refresh`).
    static let lookEvery: Duration = .seconds(1)

    let database: HubDatabase
    /// Entries kept per kind (devices, cards); beyond it the cache starts again.
    let capacity: Int
    private let state: Mutex<State>

    package init(database: HubDatabase, base: Roster, capacity: Int = 100_000) {
        self.database = database
        self.capacity = capacity
        state = Mutex(State(base: base, programs: base.programs))
    }

    /// The start roster (files, options); setting it empties the cache.
    package var base: Roster {
        get { state.withLock { $0.base } }
        set { state.withLock { $0 = State(base: newValue, programs: newValue.programs, epoch: $0.epoch + 1) } }
    }

    package var cacheCounts: (devices: Int, cards: Int) { state.withLock { ($0.devices.count, $0.cards.count) } }

    var programs: [String: Roster.Program] { state.withLock { $0.programs } }

    /// A device as the roster holds it now (nil: unknown, or the database cannot be read:
    /// fail closed). For tools and tests; requests use `lookUpDevice`.
    package func device(_ id: String) -> Roster.Device? { (try? lookUpDevice(id)) ?? nil }

    /// A device as the roster holds it now (nil: unknown).
    /// - Throws: when the database cannot be read: the caller answers 503, never "unknown".
    package func lookUpDevice(_ id: String) throws -> Roster.Device? {
        let (hit, epoch, base) = state.withLock { ($0.devices[id], $0.epoch, $0.base[id]) }
        if let hit { return hit }
        let stored = try database.rosterEntries(type: "device", keys: [id])
        var found = base
        if let line = stored[id], let r = Roster.reading(line) { found = r[id] }
        // Only what is known is kept: unknown ids (anyone can name one) would empty the cache.
        if let found { remember(epoch) { $0.devices[id] = .some(found) } }
        return found
    }

    /// The cards of `numbers` the roster holds (absent: unknown, or not readable). For tools
    /// and tests; requests use `lookUpCards`.
    package func cards(_ numbers: Set<String>) -> [String: Roster.Card] { (try? lookUpCards(numbers)) ?? [:] }

    /// The cards of `numbers` the roster holds (absent: unknown), in one query for those not cached.
    /// - Throws: when the database cannot be read (a card read as unknown would be refused for good).
    func lookUpCards(_ numbers: Set<String>) throws -> [String: Roster.Card] {
        var out: [String: Roster.Card] = [:]
        let (missing, epoch, base) = state.withLock { s -> ([String], UInt64, Roster) in
            var missing: [String] = []
            for n in numbers {
                switch s.cards[n] {
                case .some(.some(let c)): out[n] = c
                case .some(.none): break
                case .none: missing.append(n)
                }
            }
            return (missing, s.epoch, s.base)
        }
        guard !missing.isEmpty else { return out }
        let stored = try database.rosterEntries(type: "card", keys: missing)
        var looked: [String: Roster.Card?] = [:]
        for n in missing {
            var found = base.cards[n]
            if let line = stored[n], let r = Roster.reading(line) { found = r.cards[n] }
            looked[n] = .some(found)
            if let found { out[n] = found }
        }
        remember(epoch) { s in for (k, v) in looked { s.cards[k] = .some(v) } }
        return out
    }

    /// A device the cache holds, while the roster was looked at less than a second ago: a
    /// request may take it on its own task (no database read). Nil: look it up
    /// (`lookUpDevice`, on the blocking threads).
    package func cachedDevice(_ id: String) -> Roster.Device? {
        let now = ContinuousClock.now
        return state.withLock { s -> Roster.Device? in
            guard s.isFresh(at: now) else { return nil }
            return s.devices[id] ?? nil
        }
    }

    /// `batchRoster` from the cache alone, when it holds every card named (or none is) and
    /// the roster was looked at less than a second ago; nil: look them up.
    package func cachedBatchRoster(cards numbers: Set<String>) -> Roster? {
        let now = ContinuousClock.now
        return state.withLock { s -> Roster? in
            guard s.isFresh(at: now) else { return nil }
            var cards: [String: Roster.Card] = [:]
            for n in numbers {
                guard let cached = s.cards[n] else { return nil }
                if let c = cached { cards[n] = c }
            }
            return Roster(programs: s.programs, cards: cards)
        }
    }

    /// A small roster for one batch's checks: every program, and the cards it names.
    /// - Throws: when the database cannot be read.
    package func batchRoster(cards numbers: Set<String>) throws -> Roster {
        Roster(programs: programs, cards: try lookUpCards(numbers))
    }

    private func remember(_ epoch: UInt64, _ body: (inout State) -> Void) {
        state.withLock { s in
            guard s.epoch == epoch else { return }
            if s.devices.count >= capacity { s.devices.removeAll(keepingCapacity: true) }
            if s.cards.count >= capacity { s.cards.removeAll(keepingCapacity: true) }
            body(&s)
        }
    }

    /// Follows the roster changes applied since the last look (at most once a second unless
    /// forced): the changed keys evicted, the programs read again; nil when nothing moved,
    /// else how many changed entries were seen (nil inside: too many, the cache emptied) and
    /// the lines the loader refused among the programs.
    package func refresh(force: Bool = false) throws -> (mark: Int64, changed: Int?, skipped: [String])? {
        let now = ContinuousClock.now
        let due = state.withLock { s -> Bool in
            if s.refreshing || (!force && s.isFresh(at: now)) { return false }
            s.checkedAt = now
            s.refreshing = true
            return true
        }
        guard due else { return nil }
        defer { state.withLock { $0.refreshing = false } }
        let current = state.withLock { $0.mark }
        let mark = try database.rosterMark()
        guard mark != current else { return nil }
        // Every key changed after the last look, up to now (a change committed after `mark`
        // was read is evicted now and again at the next look); a mark that went back (a
        // database restored from a backup) empties the cache.
        let changed = current < 0 || mark < current ? nil : try database.rosterChangedKeys(after: current, upTo: Int64.max, limit: capacity / 2)
        let stored = try database.rosterPrograms()
        state.withLock { s in
            s.epoch += 1
            if let changed {
                for k in changed {
                    switch k.type {
                    case "device": s.devices[k.key] = nil
                    case "card": s.cards[k.key] = nil
                    default: break
                    }
                }
            } else {
                s.devices.removeAll()
                s.cards.removeAll()
            }
            s.mark = mark
        }
        var programs = state.withLock { $0.base }
        let skipped = programs.add(storedLines: stored)
        state.withLock { $0.programs = programs.programs }
        return (mark, changed?.count, skipped)
    }
}

extension HubDatabase {
    /// Stored roster lines of `type` by key (any region: a key belongs to one region).
    func rosterEntries(type: String, keys: [String]) throws -> [String: (region: String, line: String)] {
        guard !keys.isEmpty else { return [:] }
        return try engine.read { c in
            var out: [String: (region: String, line: String)] = [:]
            for start in stride(from: 0, to: keys.count, by: 200) {
                let part = keys[start..<min(start + 200, keys.count)]
                let marks = Array(repeating: "?", count: part.count).joined(separator: ", ")
                for row in try c.rows("SELECT key, region, line FROM roster_entry WHERE type = ? AND key IN (\(marks)) ORDER BY region",
                                      arguments: [.text(type)] + part.map { .text($0) }) {
                    let key = try row.text("key")
                    if out[key] == nil { out[key] = (try row.text("region"), try row.text("line")) }
                }
            }
            return out
        }
    }

    /// Every stored program line.
    func rosterPrograms() throws -> [(region: String, line: String)] {
        try engine.read { c in
            try c.rows("SELECT region, line FROM roster_entry WHERE type = 'program' ORDER BY region, key")
                .map { (try $0.text("region"), try $0.text("line")) }
        }
    }

    /// The keys changes after `mark` (up to `newest`) wrote or removed; nil when more than
    /// `limit`. Read region by region, through the `(region, seq)` indexes.
    func rosterChangedKeys(after mark: Int64, upTo newest: Int64, limit: Int) throws -> [(type: String, key: String)]? {
        try engine.read { c in
            var keys: [(type: String, key: String)] = []
            for region in try c.texts("SELECT DISTINCT region FROM roster_change WHERE seq > ? AND seq <= ? ORDER BY region", mark, newest) {
                let count = (try c.int("SELECT COUNT(*) FROM roster_entry WHERE region = ? AND seq > ? AND seq <= ?", region, mark, newest) ?? 0)
                    + (try c.int("SELECT COUNT(*) FROM roster_tombstone WHERE region = ? AND seq > ? AND seq <= ?", region, mark, newest) ?? 0)
                guard Int64(keys.count) + count <= Int64(limit) else { return nil }
                keys += try c.rows("""
                    SELECT type, key FROM roster_entry WHERE region = ? AND seq > ? AND seq <= ?
                    UNION ALL SELECT type, key FROM roster_tombstone WHERE region = ? AND seq > ? AND seq <= ?
                    """, region, mark, newest, region, mark, newest).map { (try $0.text("type"), try $0.text("key")) }
            }
            return keys
        }
    }
}
