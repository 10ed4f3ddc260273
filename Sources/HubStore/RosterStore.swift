import Crypto
import KioskProtocol
import Foundation
import HubRules

/// A roster key the hub and the publisher trust, and the regions it may change (issue 21 item 4).
public struct RosterKey: Sendable, Equatable {
    /// The roster key (Ed25519).
    public var publicKey: Curve25519.Signing.PublicKey
    /// The regions whose roster the key may change.
    public var regions: Set<String>
    /// A key bound to `regions`.
    public init(publicKey: Curve25519.Signing.PublicKey, regions: Set<String>) {
        self.publicKey = publicKey
        self.regions = regions
    }
    /// Equal when the key and the regions are.
    public static func == (a: RosterKey, b: RosterKey) -> Bool {
        a.publicKey.rawRepresentation == b.publicKey.rawRepresentation && a.regions == b.regions
    }
}

/// Trusted roster keys by `roster_key_id`.
public typealias RosterKeys = [String: RosterKey]

/// A roster change (sync spec §5): JSON Lines in the snapshot's record format, with
/// `op: delete` to remove, signed like a snapshot by the civil-affairs office's roster key.
public struct RosterChange: Sendable, Equatable {
    /// One entry of the change: a record to store, or a key to delete.
    public struct Entry: Sendable, Equatable {
        /// `program`, `device`, `person` or `card`.
        public var type: String
        /// The record's key: program code, device id, `person_ref` or card number.
        public var key: String
        /// The record as stored and published (canonical JSON); nil: delete.
        public var line: String?
        /// A change kiosks must act on at once: a person suspended or revoked, a card lost, revoked or replaced.
        public var urgent: Bool
    }
    /// The region the change is for.
    public var region: String
    /// The header's `change_id`; a change is applied once.
    public var changeID: String
    /// The header's `issued_at`.
    public var issuedAt: String
    /// The roster key that signed it.
    public var rosterKeyID: String
    /// Lowercase hex SHA-256 of every byte before the trailer (what the signature covers).
    public var sha256: String
    /// The entries, in the file's order.
    public var entries: [Entry]
    /// Whether any entry is urgent (kiosks must act on it at once).
    public var urgent: Bool { entries.contains { $0.urgent } }
    var verified: Verified {
        Verified(region: region, changeID: changeID, issuedAt: issuedAt, rosterKeyID: rosterKeyID, sha256: sha256, records: entries.count)
    }

    /// Why a roster change is refused.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        /// The change cannot be read, with why.
        case unreadable(String)
        /// Not a `roster-change` header of format_version 1, or a header field missing or unsafe.
        case badHeader(String)
        /// An entry the roster loader's rules refuse (or a `usage` line), with its line.
        case badRecord(line: Int, String)
        /// No trailer line.
        case noTrailer
        /// The trailer's `records` is not the number of entries.
        case countMismatch(trailer: Int, found: Int)
        /// The trailer's `sha256` is not the file's (or the file changed between two reads).
        case digestMismatch
        /// The roster key is not trusted (or a `--roster-key` option cannot be read).
        case untrustedKey(String)
        /// The signature does not verify.
        case badSignature
        /// A change with this `change_id` was already applied (a replay).
        case alreadyApplied(String)
        /// The signing key is trusted, but not for the change's region (issue 21 item 4).
        case wrongRegion(key: String, region: String)
        /// An entry names a device, person or card the roster holds in another region: one
        /// region's key cannot touch another region's entries (issue 21 item 4).
        case otherRegion(type: String, key: String, region: String)

        /// The refusal in one line.
        public var description: String {
            switch self {
            case .unreadable(let why): return "cannot read the roster change: \(why)"
            case .badHeader(let why): return "roster change header: \(why)"
            case .badRecord(let n, let why): return "roster change line \(n): \(why)"
            case .noTrailer: return "the roster change has no trailer"
            case .countMismatch(let t, let f): return "the trailer says \(t) records, the file holds \(f)"
            case .digestMismatch: return "the trailer's sha256 does not match the file"
            case .untrustedKey(let k): return "roster key \"\(k)\" is not trusted"
            case .badSignature: return "the roster change's signature does not verify"
            case .alreadyApplied(let id): return "change \(id) was already applied"
            case .wrongRegion(let k, let r): return "roster key \"\(k)\" is not trusted for region \(r)"
            case .otherRegion(let t, let k, let r): return "\(t) \(Masking.text(k)) belongs to region \(r): this region's key cannot change it"
            }
        }
    }

    /// The key of a record of `type` (snapshot spec §1 table), or nil when the type has none
    /// the roster keeps (`usage` is the platform's own, never a roster change's).
    public static func key(type: String, _ o: [String: Any]) -> String? {
        func s(_ k: String) -> String? { o[k] as? String }
        switch type {
        case "program": return s("code")
        case "device": return s("device_id")
        case "person": return s("person_ref")
        case "card": return s("card_number")
        default: return nil
        }
    }

    static let keyField = ["program": "code", "device": "device_id", "person": "person_ref", "card": "card_number"]

    /// Trusted roster keys from `KEY_ID=BASE64,REGION[,REGION…]` options (the hub's and the
    /// publisher's `--roster-key`): each key is bound to the regions it may change (issue 21
    /// item 4); a key named without a region is refused.
    public static func keys(options: [String]) throws -> RosterKeys {
        var keys: RosterKeys = [:]
        for k in options {
            let parts = k.split(separator: "=", maxSplits: 1).map(String.init)
            let fields = parts.count == 2 ? parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init) : []
            guard parts.count == 2, !parts[0].isEmpty, let encoded = fields.first, let raw = Data(base64Encoded: encoded),
                  let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
                throw Refusal.untrustedKey("--roster-key \(k) is not KEY_ID=BASE64,REGION of 32 bytes")
            }
            let regions = fields.dropFirst()
            guard !regions.isEmpty, regions.allSatisfy(Identifiers.isSyncName) else {
                throw Refusal.untrustedKey("--roster-key \(parts[0]) names no region (KEY_ID=BASE64,REGION[,REGION…]): a roster key is bound to its regions")
            }
            keys[parts[0]] = RosterKey(publicKey: key, regions: Set(regions))
        }
        return keys
    }

    /// Reads and verifies a roster change held in memory: header, records, trailer (count,
    /// sha256 of every byte before it, Ed25519 by the named roster key over those 32 bytes).
    public static func read(_ bytes: [UInt8], trustedKeys: RosterKeys) throws(Refusal) -> RosterChange {
        let lines = { (body: (ArraySlice<UInt8>) throws -> Void) throws in try LineReader.each(bytes, body) }
        let verified = try verify(lines, trustedKeys: trustedKeys)
        var entries: [Entry] = []
        let again = try scan(lines) { entries.append($0) }.verified
        guard again == verified else { throw .digestMismatch }
        return RosterChange(region: verified.region, changeID: verified.changeID, issuedAt: verified.issuedAt,
                            rosterKeyID: verified.rosterKeyID, sha256: verified.sha256, entries: entries)
    }

    /// What a roster change's header and trailer say, once verified.
    public struct Verified: Sendable, Equatable {
        /// The region the change is for.
        public var region: String
        /// `change_id`.
        public var changeID: String
        /// `issued_at`.
        public var issuedAt: String
        /// The roster key that signed it.
        public var rosterKeyID: String
        /// Lowercase hex SHA-256 of every byte before the trailer.
        public var sha256: String
        /// The number of entries.
        public var records: Int
    }

    /// The lines of a roster change, handed to `body` one by one (a file read 1 MiB at a time,
    /// or bytes in memory).
    public typealias Lines = ((ArraySlice<UInt8>) throws -> Void) throws -> Void

    /// The lines of the file at `url`, in flat memory.
    public static func lines(of url: URL) -> Lines {
        { body in try LineReader.each(url, body) }
    }

    /// Pass 1 of a streamed import: the header, the count, the digest and the signature,
    /// without keeping any record (records are checked in pass 2, inside the transaction that
    /// applies them, and the digest again, so a file changed in between is refused whole).
    public static func verify(_ lines: Lines, trustedKeys: RosterKeys) throws(Refusal) -> Verified {
        let (found, digest, signature) = try scan(lines, entry: nil)
        guard let key = trustedKeys[found.rosterKeyID] else { throw .untrustedKey(found.rosterKeyID) }
        guard let signature, key.publicKey.isValidSignature(signature, for: digest) else { throw .badSignature }
        guard key.regions.contains(found.region) else { throw .wrongRegion(key: found.rosterKeyID, region: found.region) }
        return found
    }

    /// Pass 2 of a streamed import, for another store than the hub's (the publisher's own,
    /// issue 21 item 1): every entry checked and handed to `body` in order; what the header
    /// and trailer say (the caller compares it with pass 1's).
    public static func entries(_ lines: Lines, _ body: (Entry) throws -> Void) throws(Refusal) -> Verified {
        try withoutActuallyEscaping(body) { (escapable) throws(Refusal) -> Verified in try scan(lines, entry: escapable).verified }
    }

    /// One pass over the lines: the header parsed, every line before the trailer hashed (and,
    /// given `entry`, checked and handed over as an entry), the trailer's count and digest
    /// compared. The signature is the caller's to check.
    static func scan(_ lines: Lines, entry: ((Entry) throws -> Void)?) throws(Refusal) -> (verified: Verified, digest: Data, signature: Data?) {
        var hasher = SHA256()
        var held: [UInt8]?, number = 0, records = 0
        var header: (region: String, changeID: String, issuedAt: String, keyID: String)?
        do {
            try lines { line in
                number += 1
                if let before = held {
                    hasher.update(data: before); hasher.update(data: [0x0A])
                    if number == 2 {
                        header = try Self.header(before[...])
                    } else {
                        records += 1
                        if let entry { try entry(try Self.entry(before[...], number - 1)) }
                    }
                }
                held = Array(line)
            }
        } catch let r as Refusal {
            throw r
        } catch {
            throw .unreadable("\(error)")
        }
        guard let trailerLine = held, number >= 2, let header else { throw .noTrailer }
        let trailer = try object(trailerLine[...], number)
        guard trailer["type"] as? String == "trailer" else { throw .noTrailer }
        guard JSONInteger.value(trailer["records"]) == Int64(records) else {
            throw .countMismatch(trailer: Int(JSONInteger.value(trailer["records"]) ?? -1), found: records)
        }
        let digest = Data(hasher.finalize())
        let hex = Hex.encode(digest)
        guard trailer["sha256"] as? String == hex else { throw .digestMismatch }
        let signature = (trailer["signature"] as? String).flatMap { Data(base64Encoded: $0) }
        return (Verified(region: header.region, changeID: header.changeID, issuedAt: header.issuedAt, rosterKeyID: header.keyID,
                         sha256: hex, records: records), digest, signature)
    }

    static func object(_ line: ArraySlice<UInt8>, _ n: Int) throws(Refusal) -> [String: Any] {
        guard line.count <= 64 * 1024, let o = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
            throw .badRecord(line: n, "not a JSON object of at most 64 KiB")
        }
        return o
    }

    package static func header(_ line: ArraySlice<UInt8>) throws(Refusal) -> (region: String, changeID: String, issuedAt: String, keyID: String) {
        let header = try object(line, 1)
        guard header["type"] as? String == "header", header["format"] as? String == "roster-change",
              JSONInteger.value(header["format_version"]) == 1 else {
            throw .badHeader("not a roster-change header, format_version 1")
        }
        func text(_ k: String) throws(Refusal) -> String {
            guard let v = header[k] as? String, !v.isEmpty, v.utf8.count <= 256 else { throw .badHeader("\(k) is missing or not a string") }
            return v
        }
        let region = try text("region"), changeID = try text("change_id"), issuedAt = try text("issued_at"), keyID = try text("roster_key_id")
        guard Identifiers.isSyncName(region), Identifiers.isSyncName(changeID) else { throw .badHeader("region or change_id has unsafe characters") }
        guard Timestamp.date(issuedAt) != nil else { throw .badHeader("issued_at is not an RFC 3339 time") }
        return (region, changeID, issuedAt, keyID)
    }

    /// A record line checked and made an entry (its canonical line, or a delete). A line
    /// already canonical (keys in byte order, each once, no whitespace, no escapes, arrays
    /// flat) is kept as it is, read through `JSONSpans`; any other goes through
    /// JSONSerialization and is written back with sorted keys. (Writing every line back was
    /// two thirds of a region's import.)
    static func entry(_ line: ArraySlice<UInt8>, _ n: Int) throws(Refusal) -> Entry {
        guard line.count <= 64 * 1024 else { throw .badRecord(line: n, "not a JSON object of at most 64 KiB") }
        if let fields = CanonicalLine(line) {
            return try entry(n, text: fields.text, has: fields.has) { String(decoding: line, as: UTF8.self) }
        }
        var o = try object(line, n)
        return try entry(n, text: { o[$0] as? String }, has: { o[$0] != nil }) {
            o.removeValue(forKey: "op")
            guard let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// The checks of a record, whichever way it was read: `text` is a member's string value
    /// (nil when absent or not a string), `canonical` the line to store.
    private static func entry(_ n: Int, text: (String) -> String?, has: (String) -> Bool, canonical: () -> String?) throws(Refusal) -> Entry {
        guard let type = text("type") else { throw .badRecord(line: n, "no type") }
        if type == "usage" { throw .badRecord(line: n, "a roster change never carries usage (S comes from records alone)") }
        guard let field = keyField[type], let key = text(field) else { throw .badRecord(line: n, "\(type) is not a roster type, or its key is missing") }
        guard key.utf8.count <= 256 else { throw .badRecord(line: n, "the key is longer than 256 bytes") }
        if type == "card", !Identifiers.isCardNumber(key) { throw .badRecord(line: n, "card_number is not 16 digits") }
        if type == "person" || type == "card", let ref = text("person_ref"), !Identifiers.isPersonRef(ref) {
            throw .badRecord(line: n, "person_ref is not 32 lowercase hex digits")
        }
        if has("op") {
            guard text("op") == "delete" else { throw .badRecord(line: n, "op is neither absent nor delete") }
            return Entry(type: type, key: key, line: nil, urgent: type == "person" || type == "card")
        }
        let status = text("status") ?? ""
        let urgent = (type == "person" && ["suspended", "revoked"].contains(status)) || (type == "card" && ["lost", "revoked", "replaced"].contains(status))
        guard let line = canonical() else { throw .badRecord(line: n, "cannot be written back") }
        try loaderRules(type: type, line: line, n, text: text, has: has)
        return Entry(type: type, key: key, line: line, urgent: urgent)
    }
}

extension RosterChange {
    /// The rules the roster loader (`Roster.add(record:)`) applies, applied to every entry of
    /// a change before anything is stored (issue 21 item 4: a line the loader would refuse
    /// once stored must never be answered 200). Programs and devices (a region holds a few)
    /// are read whole and given to the loader itself; a card's key is checked from its
    /// string (a region holds millions); a person has no rule beyond its reference.
    static func loaderRules(type: String, line: String, _ n: Int, text: (String) -> String?, has: (String) -> Bool) throws(Refusal) {
        switch type {
        case "program", "device":
            guard let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                throw .badRecord(line: n, "not a JSON object")
            }
            var scratch = Roster()
            do { try scratch.add(record: o, path: "roster change", line: n) } catch {
                throw .badRecord(line: n, "the roster loader refuses it: \(error)")
            }
        case "card":
            if has("public_key") {
                guard let key = text("public_key"), let raw = Data(base64Encoded: key), raw.count == 32 else {
                    throw .badRecord(line: n, "card public_key is not base64 of 32 bytes")
                }
            }
            if let status = text("status"), status.isEmpty { throw .badRecord(line: n, "status is empty") }
        default:
            break
        }
    }
}

/// A record line that is already in the form the hub stores: a JSON object (strict syntax,
/// `JSONSpans`) with no whitespace between tokens, no backslash anywhere (so every string is
/// its bytes), its keys in strictly ascending byte order (so each once), and values that
/// are strings, numbers, literals or flat arrays of those. Nil for anything else.
package struct CanonicalLine {
    private let bytes: [UInt8]
    private let members: [String: Range<Int>]

    init?(_ line: ArraySlice<UInt8>) {
        guard line.first == UInt8(ascii: "{"), !line.contains(UInt8(ascii: "\\")) else { return nil }
        let bytes = Array(line)
        guard let list = try? StrictJSON.objectMembers(bytes) else { return nil }
        var length = list.isEmpty ? 2 : 1 + list.count   // braces and commas
        var previous: [UInt8]?
        var members: [String: Range<Int>] = [:]
        for m in list {
            let key = Array(m.key.utf8)
            if let previous, !previous.lexicographicallyPrecedes(key) { return nil }
            previous = key
            length += key.count + 3 + m.value.count           // "key": value
            if bytes[m.value.lowerBound] == UInt8(ascii: "[") || bytes[m.value.lowerBound] == UInt8(ascii: "{") {
                guard Self.isFlat(bytes[m.value]) else { return nil }
            }
            members[m.key] = m.value
        }
        guard length == bytes.count else { return nil }
        self.bytes = bytes
        self.members = members
    }

    /// An array of scalars with no whitespace outside its strings (strings hold no backslash).
    private static func isFlat(_ value: ArraySlice<UInt8>) -> Bool {
        guard value.first == UInt8(ascii: "[") else { return false }
        var inString = false
        for b in value.dropFirst() {
            if b == UInt8(ascii: "\"") { inString.toggle(); continue }
            if inString { continue }
            if b == UInt8(ascii: "[") || b == UInt8(ascii: "{") || b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { return false }
        }
        return true
    }

    func has(_ key: String) -> Bool { members[key] != nil }

    func text(_ key: String) -> String? {
        guard let r = members[key], r.count >= 2, bytes[r.lowerBound] == UInt8(ascii: "\"") else { return nil }
        return String(decoding: bytes[(r.lowerBound + 1)..<(r.upperBound - 1)], as: UTF8.self)
    }
}

extension HubDatabase {
    /// Applies a verified roster change in one transaction; a change applied before is refused.
    @discardableResult
    public func applyRosterChange(_ change: RosterChange, now: Date) throws -> Int {
        try engine.write { c in
            let seq = try Self.beginRosterChange(c, change.verified, now: now)
            for start in stride(from: 0, to: change.entries.count, by: Self.rosterChunk) {
                try Self.applyRosterEntries(c, region: change.region, seq: seq, change.entries[start..<min(start + Self.rosterChunk, change.entries.count)])
            }
            if change.urgent { try c.execute("UPDATE roster_change SET urgent = ? WHERE seq = ?", true, seq) }
            return change.entries.count
        }
    }

    /// Imports a roster change of any size in flat memory: pass 1 verifies the header, count,
    /// digest and signature; pass 2, in one transaction, checks each record and applies them a
    /// chunk at a time, and compares the digest again (a file changed between the passes, or
    /// a bad record anywhere, refuses the change whole: nothing applied).
    /// `verifiedFirst` hears of pass 1's end (a long import says so before it starts writing).
    public func importRosterChange(_ lines: RosterChange.Lines, trustedKeys: RosterKeys, now: Date,
                                   verifiedFirst: (RosterChange.Verified) -> Void = { _ in }) throws -> (RosterChange.Verified, urgent: Bool) {
        let verified = try RosterChange.verify(lines, trustedKeys: trustedKeys)
        verifiedFirst(verified)
        return try engine.write { c in
            // A region's first import touches the whole roster index at random keys: SQLite's
            // page cache (2 MB by default) is raised to 128 MB for it; bounded whatever its size.
            if engine is SQLiteEngine { try c.execute("PRAGMA cache_size = -131072", arguments: []) }
            let seq = try Self.beginRosterChange(c, verified, now: now)
            var chunk: [RosterChange.Entry] = [], urgent = false
            chunk.reserveCapacity(Self.rosterChunk)
            let again = try RosterChange.scan(lines) { e in
                urgent = urgent || e.urgent
                chunk.append(e)
                if chunk.count == Self.rosterChunk {
                    try Self.applyRosterEntries(c, region: verified.region, seq: seq, chunk[...]); chunk.removeAll(keepingCapacity: true)
                }
            }.verified
            guard again == verified else { throw RosterChange.Refusal.digestMismatch }
            try Self.applyRosterEntries(c, region: verified.region, seq: seq, chunk[...])
            if urgent { try c.execute("UPDATE roster_change SET urgent = ? WHERE seq = ?", true, seq) }
            return (verified, urgent)
        }
    }

    /// Entries applied a chunk at a time (each chunk's rows a few hundred a statement).
    static let rosterChunk = 2_000

    /// The change's row (refused when its change_id was applied before); its number.
    static func beginRosterChange(_ c: SQLConnection, _ v: RosterChange.Verified, now: Date) throws -> Int64 {
        if try c.exists("SELECT 1 FROM roster_change WHERE change_id = ?", v.changeID) {
            throw RosterChange.Refusal.alreadyApplied(v.changeID)
        }
        guard let seq = try c.int("""
            INSERT INTO roster_change (change_id, region, issued_at, sha256, records, urgent, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            RETURNING seq
            """, v.changeID, v.region, v.issuedAt, v.sha256, v.records, false, Timestamp.string(now, fractional: false)) else {
            throw HubDatabaseError.inconsistent("the roster change's number was not returned")
        }
        return seq
    }

    /// Consecutive entries of a change applied as if one by one: within the chunk the last
    /// entry for a key wins (a statement may touch a row once), and chunks go in order.
    static func applyRosterEntries(_ c: SQLConnection, region: String, seq: Int64, _ chunk: ArraySlice<RosterChange.Entry>) throws {
        var last: [String: Int] = [:]
        for (i, e) in chunk.enumerated() { last["\(e.type)|\(e.key)"] = i }
        let entries = chunk.enumerated().filter { last["\($0.element.type)|\($0.element.key)"] == $0.offset }.map(\.element)
        let kept = entries.filter { $0.line != nil }, removed = entries.filter { $0.line == nil }
        // Issue 21 item 4: one region's key cannot touch another region's devices, persons or
        // cards (the hub knows each of them by its key alone, whatever the region).
        let keyed = entries.filter { $0.type != "program" }.map { [SQLValue.text($0.type), .text($0.key)] }
        for start in stride(from: 0, to: keyed.count, by: 200) {
            let part = keyed[start..<min(start + 200, keyed.count)]
            // A join on the VALUES list, not `(type, key) IN (VALUES …)`: SQLite scans the whole
            // table for the latter (a region's import became quadratic), and uses the
            // `(type, key)` index for the former; both engines name the columns column1, column2.
            if let other = try c.rows("""
                SELECT e.region, e.type, e.key FROM (VALUES \(placeholderTuples(part.count, width: 2))) AS v
                JOIN roster_entry e ON e.type = v.column1 AND e.key = v.column2 WHERE e.region <> ? LIMIT 1
                """, arguments: part.flatMap { $0 } + [.text(region)]).first {
                throw RosterChange.Refusal.otherRegion(type: try other.text("type"), key: try other.text("key"), region: try other.text("region"))
            }
        }
        let region = SQLValue.text(region)
        try c.executeChunked(kept.map { [region, .text($0.type), .text($0.key), .text($0.line ?? ""), .int(seq)] }) {
            "INSERT INTO roster_entry (region, type, key, line, seq) VALUES \($0) ON CONFLICT (region, type, key) DO UPDATE SET line = excluded.line, seq = excluded.seq"
        }
        try c.executeChunked(removed.map { [region, .text($0.type), .text($0.key), .int(seq)] }) {
            "INSERT INTO roster_tombstone (region, type, key, seq) VALUES \($0) ON CONFLICT (region, type, key) DO UPDATE SET seq = excluded.seq"
        }
        // An entry kept leaves no tombstone; one removed leaves no entry.
        for (table, list) in [("roster_tombstone", kept), ("roster_entry", removed)] {
            try c.executeChunked(list.map { [.text($0.type), .text($0.key)] }, leading: [region]) {
                "DELETE FROM \(table) WHERE region = ? AND (type, key) IN (VALUES \($0))"
            }
        }
    }

    /// Changes applied so far (the hub reloads its roster when this moves).
    public func rosterMark() throws -> Int64 {
        try engine.read { c in try c.int("SELECT COALESCE(MAX(seq), 0) FROM roster_change") ?? 0 }
    }

    /// The roster entries as stored, by region: `type` → key → canonical line.
    public func rosterLines(region: String) throws -> [(type: String, key: String, line: String)] {
        try engine.read { c in
            try c.rows("SELECT type, key, line FROM roster_entry WHERE region = ? ORDER BY type, key", region)
                .map { (try $0.text("type"), try $0.text("key"), try $0.text("line")) }
        }
    }

    /// Every region's stored roster added to `roster` (a later entry replaces an earlier
    /// one's); the lines the loader refused, described (issue 21 item 4: skipped, alerted).
    public func loadRoster(into roster: inout Roster) throws -> [String] {
        let rows = try engine.read { c in
            try c.rows("SELECT region, line FROM roster_entry ORDER BY region, type, key").map { (region: try $0.text("region"), line: try $0.text("line")) }
        }
        return roster.add(storedLines: rows)
    }
}
