import Crypto
import Entitlements
import Foundation

/// A roster change (sync spec §5): JSON Lines in the snapshot's record format, with
/// `op: delete` to remove, signed like a snapshot by the civil-affairs office's roster key.
public struct RosterChange: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var type: String
        public var key: String
        /// The record as stored and published (canonical JSON); nil: delete.
        public var line: String?
        /// A change kiosks must act on at once: a person suspended or revoked, a card lost, revoked or replaced.
        public var urgent: Bool
    }
    public var region: String
    public var changeID: String
    public var issuedAt: String
    public var rosterKeyID: String
    public var sha256: String
    public var entries: [Entry]
    public var urgent: Bool { entries.contains { $0.urgent } }

    /// Why a roster change is refused.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case unreadable(String)
        case badHeader(String)
        case badRecord(line: Int, String)
        case noTrailer
        case countMismatch(trailer: Int, found: Int)
        case digestMismatch
        case untrustedKey(String)
        case badSignature
        case alreadyApplied(String)

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

    /// Trusted roster keys from `KEY_ID=BASE64` options (the hub's and the publisher's `--roster-key`).
    public static func keys(options: [String]) throws -> [String: Curve25519.Signing.PublicKey] {
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        for k in options {
            let parts = k.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let raw = Data(base64Encoded: parts[1]), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
                throw Refusal.untrustedKey("--roster-key \(k) is not KEY_ID=BASE64 of 32 bytes")
            }
            keys[parts[0]] = key
        }
        return keys
    }

    /// Reads and verifies a roster change: header, records, trailer (count, sha256 of every
    /// byte before it, Ed25519 by the named roster key over those 32 bytes).
    public static func read(_ bytes: [UInt8], trustedKeys: [String: Curve25519.Signing.PublicKey]) throws(Refusal) -> RosterChange {
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == 0x0A {
            lines.append(bytes[start..<i]); start = i + 1
        }
        if start < bytes.count { lines.append(bytes[start...]) }
        guard lines.count >= 2 else { throw .noTrailer }
        func object(_ line: ArraySlice<UInt8>, _ n: Int) throws(Refusal) -> [String: Any] {
            guard line.count <= 64 * 1024, let o = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw .badRecord(line: n, "not a JSON object of at most 64 KiB")
            }
            return o
        }
        let header = try object(lines[0], 1)
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
        guard RecordRules.isRFC3339(issuedAt) else { throw .badHeader("issued_at is not an RFC 3339 time") }
        let trailer = try object(lines[lines.count - 1], lines.count)
        guard trailer["type"] as? String == "trailer" else { throw .noTrailer }
        let recordCount = lines.count - 2
        guard JSONInteger.value(trailer["records"]) == Int64(recordCount) else {
            throw .countMismatch(trailer: Int(JSONInteger.value(trailer["records"]) ?? -1), found: recordCount)
        }
        let signedLength = lines[lines.count - 1].startIndex
        let digest = Data(SHA256.hash(data: bytes[..<signedLength]))
        let hex = digest.map { String(format: "%02x", $0) }.joined()
        guard trailer["sha256"] as? String == hex else { throw .digestMismatch }
        guard let key = trustedKeys[keyID] else { throw .untrustedKey(keyID) }
        guard let sigText = trailer["signature"] as? String, let signature = Data(base64Encoded: sigText),
              key.isValidSignature(signature, for: digest) else { throw .badSignature }

        var entries: [Entry] = []
        for (i, line) in lines.dropFirst().dropLast().enumerated() {
            let n = i + 2
            var o = try object(line, n)
            guard let type = o["type"] as? String else { throw .badRecord(line: n, "no type") }
            if type == "usage" { throw .badRecord(line: n, "a roster change never carries usage (S comes from records alone)") }
            guard let key = Self.key(type: type, o) else { throw .badRecord(line: n, "\(type) is not a roster type, or its key is missing") }
            guard key.utf8.count <= 256 else { throw .badRecord(line: n, "the key is longer than 256 bytes") }
            if type == "card", !Identifiers.isCardNumber(key) { throw .badRecord(line: n, "card_number is not 16 digits") }
            if type == "person" || type == "card", let ref = o["person_ref"] as? String, !Identifiers.isPersonRef(ref) {
                throw .badRecord(line: n, "person_ref is not 32 lowercase hex digits")
            }
            if let op = o["op"] {
                guard op as? String == "delete" else { throw .badRecord(line: n, "op is neither absent nor delete") }
                entries.append(Entry(type: type, key: key, line: nil, urgent: type == "person" || type == "card"))
                continue
            }
            o.removeValue(forKey: "op")
            let status = o["status"] as? String ?? ""
            let urgent = (type == "person" && ["suspended", "revoked"].contains(status)) || (type == "card" && ["lost", "revoked", "replaced"].contains(status))
            guard let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]) else {
                throw .badRecord(line: n, "cannot be written back")
            }
            entries.append(Entry(type: type, key: key, line: String(decoding: data, as: UTF8.self), urgent: urgent))
        }
        return RosterChange(region: region, changeID: changeID, issuedAt: issuedAt, rosterKeyID: keyID, sha256: hex, entries: entries)
    }
}

extension HubDatabase {
    /// Applies a verified roster change in one transaction; a change applied before is refused.
    @discardableResult
    public func applyRosterChange(_ change: RosterChange, now: Date) throws -> Int {
        try engine.write { c in
            if try c.exists("SELECT 1 FROM roster_change WHERE change_id = ?", change.changeID) {
                throw RosterChange.Refusal.alreadyApplied(change.changeID)
            }
            guard let seq = try c.int("""
                INSERT INTO roster_change (change_id, region, issued_at, sha256, records, urgent, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                RETURNING seq
                """, change.changeID, change.region, change.issuedAt, change.sha256, change.entries.count, change.urgent,
                                     SettlementHub.timestamp(now, fractional: false)) else {
                throw HubDatabaseError.inconsistent("the roster change's number was not returned")
            }
            // The last entry for a key wins (as if applied one by one); then a few hundred
            // rows a statement (on PostgreSQL a statement is a round trip).
            var last: [String: Int] = [:]
            for (i, e) in change.entries.enumerated() { last["\(e.type)|\(e.key)"] = i }
            let entries = change.entries.enumerated().filter { last["\($0.element.type)|\($0.element.key)"] == $0.offset }.map(\.element)
            let kept = entries.filter { $0.line != nil }, removed = entries.filter { $0.line == nil }
            let region = SQLValue.text(change.region)
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
            return change.entries.count
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

    /// Every region's stored roster added to `roster` (a later entry replaces an earlier one's).
    public func loadRoster(into roster: inout Roster) throws {
        let rows = try engine.read { c in try c.texts("SELECT line FROM roster_entry ORDER BY region, type, key") }
        for (i, line) in rows.enumerated() {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            try roster.add(record: o, path: "roster_entry", line: i + 1)
        }
    }
}
