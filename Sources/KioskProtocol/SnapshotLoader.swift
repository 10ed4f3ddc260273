import Crypto
import Foundation

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

    /// A header of these fields.
    public init(snapshotID: String, kind: String, baseSnapshotID: String?, region: String, issuedAt: String,
                expiresAt: String, settledThrough: String, authorityKeyID: String) {
        self.snapshotID = snapshotID; self.kind = kind; self.baseSnapshotID = baseSnapshotID; self.region = region
        self.issuedAt = issuedAt; self.expiresAt = expiresAt; self.settledThrough = settledThrough; self.authorityKeyID = authorityKeyID
    }
}


/// Where a snapshot's records go: a delta's statements, or a full install's batches.
public protocol SnapshotSink {
    /// A `person` line.
    mutating func person(_ personRef: String, _ status: String, _ reason: String, _ programs: String) throws
    /// A `card` line.
    mutating func card(_ number: String, _ personRef: String, _ status: String) throws
    /// A `usage` line.
    mutating func usage(_ personRef: String, _ program: String, _ period: String, _ usedFen: Int) throws
    /// A `program` line, as its JSON text with sorted keys.
    mutating func program(_ code: String, _ json: String) throws
    /// A `device` line.
    mutating func device(_ id: String, _ publicKey: String, _ institution: String, _ status: String) throws
    /// A delta's `op: delete` line: the record of `type` with this key goes.
    mutating func delete(_ type: String, _ key: [String]) throws
}

/// One install: the header, then the records streamed into a sink, then the trailer.
public struct SnapshotLoader {
    var reader: LineReader
    let authorities: [String: Curve25519.Signing.PublicKey]
    /// The kiosk's clock for the install (sync spec §6 compares `issued_at` with it).
    public let now: Date
    var hasher = SHA256()
    /// The line being read, counted from 1.
    public internal(set) var lineNumber = 0
    /// Records read between the header and the trailer, ignored ones included.
    public internal(set) var records = 0
    /// Records of unknown types, counted and ignored (snapshot spec §1).
    public internal(set) var ignored = 0

    /// The header, once `readHeader()` read it.
    public internal(set) var header: SnapshotHeader?

    /// The reader's next line; one longer than the spec's 64 KiB is `bad_record` naming it.
    mutating func nextLine() throws -> ArraySlice<UInt8>? {
        do { return try reader.next() } catch let e as LineReader.TooLong {
            throw SnapshotRefusal.badRecord(line: e.line, "the line is longer than \(e.maxLine) bytes")
        }
    }

    /// A loader reading `reader`, trusting `authorities` (key id → public key).
    public init(reader: LineReader, authorities: [String: Curve25519.Signing.PublicKey], now: Date) {
        self.reader = reader; self.authorities = authorities; self.now = now
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
    public mutating func readHeader() throws -> SnapshotHeader {
        guard let first = try nextLine() else { throw SnapshotRefusal.emptyFile }
        lineNumber = 1
        let h = try checkHeader(object(first, hashed: true))
        header = h
        return h
    }

    /// Every record into `sink` (`between` runs after each, to flush batches), then the
    /// trailer: count, digest and the authority's signature.
    public mutating func stream<S: SnapshotSink>(into sink: inout S, delta: Bool, between: (inout S) throws -> Void) throws {
        guard let header else { throw SnapshotRefusal.badHeader("no header read") }
        guard var pending = try nextLine() else { throw SnapshotRefusal.noTrailer }
        lineNumber = 2
        while let next = try nextLine() {
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
        guard Hex.encode(digest) == sha.lowercased() else { throw SnapshotRefusal.digestMismatch }
        guard let key = authorities[header.authorityKeyID] else { throw SnapshotRefusal.untrustedAuthority(header.authorityKeyID) }
        guard let signature = Data(base64Encoded: sig), key.isValidSignature(signature, for: digest) else { throw SnapshotRefusal.badSignature }
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

    /// Snapshot spec §2 against the installed snapshot: a delta's base, the region, a later `issued_at`.
    public static func checkAgainstInstalled(_ h: SnapshotHeader, _ installed: SnapshotHeader?) throws {
        if h.kind == "delta" && h.baseSnapshotID != installed?.snapshotID {
            throw SnapshotRefusal.wrongBase(expected: h.baseSnapshotID, installed: installed?.snapshotID)
        }
        guard let installed else { return }
        guard h.region == installed.region else { throw SnapshotRefusal.regionDiffers(snapshot: h.region, installed: installed.region) }
        guard Timestamp.date(h.issuedAt)! > Timestamp.date(installed.issuedAt)! else {
            throw SnapshotRefusal.notNewer(issuedAt: h.issuedAt, installed: installed.issuedAt)
        }
    }

    /// Program codes inside the `person.programs` column, joined by the unit separator.
    public static let separator = "\u{1F}"

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
        let r = SnapshotRecord(o: o, type: type, line: lineNumber)
        let known = ["person", "card", "usage", "program", "device", "header", "trailer"].contains(type)
        guard known else { ignored += 1; return }   // an unknown record type: ignored, counted
        if let field = SnapshotLoader.overlongString(o, path: "") {
            throw r.bad("\(type) \(field) is longer than \(SnapshotLoader.maxString) bytes")
        }
        let delete = delta && (o["op"] as? String) == "delete"
        switch type {
        case "person": try Self.applyPerson(r, &s, delete: delete)
        case "card": try Self.applyCard(r, &s, delete: delete)
        case "usage": try Self.applyUsage(r, &s, delete: delete)
        case "program": try Self.applyProgram(r, &s, delete: delete)
        case "device": try Self.applyDevice(r, &s, delete: delete)
        default:   // "header", "trailer"
            throw r.bad("a second \(type) inside the file")
        }
    }

    /// A `person` record (or its delta's delete) into `s`.
    private static func applyPerson<S: SnapshotSink>(_ r: SnapshotRecord, _ s: inout S, delete: Bool) throws {
        let o = r.o
        let id = try r.personRef()
        if delete { try s.delete("person", [id]); return }
        guard let list = o["programs"] as? [Any] else { throw r.bad("person programs missing") }
        var programs: [String] = [], seen = Set<String>()
        for entry in list {
            guard let code = entry as? String else { throw r.bad("person programs holds something other than a program code") }
            _ = try r.programCode(code, "programs")
            // A code the file does not define is allowed (ignored for decisions); twice is not.
            guard seen.insert(code).inserted else { throw r.bad("person programs names \(code) twice") }
            programs.append(code)
        }
        try s.person(id, try r.string("status", allowed: SnapshotLoader.personStatuses),
                     (o["status_reason"] as? String) ?? "", programs.joined(separator: SnapshotLoader.separator))
    }

    /// A `card` record (or its delta's delete) into `s`.
    private static func applyCard<S: SnapshotSink>(_ r: SnapshotRecord, _ s: inout S, delete: Bool) throws {
        let number = try r.key("card_number")
        guard Identifiers.isCardNumber(number) else { throw r.bad("card card_number \(SnapshotLoader.quoted(number)) is not 16 digits") }
        if delete { try s.delete("card", [number]); return }
        try s.card(number, try r.personRef(), try r.string("status", allowed: SnapshotLoader.cardStatuses))
    }

    /// A `usage` record (or its delta's delete) into `s`.
    private static func applyUsage<S: SnapshotSink>(_ r: SnapshotRecord, _ s: inout S, delete: Bool) throws {
        let o = r.o
        let id = try r.personRef(), program = try r.programCode(try r.key("program"), "program"), period = try r.key("period")
        if delete { try s.delete("usage", [id, program, period]); return }
        guard let used = SnapshotLoader.integer(o["used_fen"]) else { throw r.bad("usage used_fen is not an integer") }
        // Snapshot spec (amendment 2026-12-06): 0–9,000,000,000,000, so no sum a terminal makes overflows.
        guard (0...SnapshotLoader.maxUsedFen).contains(used) else { throw r.bad("usage used_fen \(used) is not 0–\(SnapshotLoader.maxUsedFen)") }
        try s.usage(id, program, period, Int(used))
    }

    /// A `program` record (or its delta's delete) into `s`, as its JSON text with sorted keys.
    private static func applyProgram<S: SnapshotSink>(_ r: SnapshotRecord, _ s: inout S, delete: Bool) throws {
        let o = r.o
        let code = try r.programCode(try r.key("code"), "code")
        if delete { try s.delete("program", [code]); return }
        if o["limit_fen"] != nil {
            guard let limit = SnapshotLoader.integer(o["limit_fen"]), (1...SnapshotLoader.maxLimitFen).contains(limit) else {
                throw r.bad("program \(code) limit_fen is not a positive integer ≤ 100000000")
            }
        }
        if o["rate_percent"] != nil {
            guard let rate = SnapshotLoader.integer(o["rate_percent"]), (1...100).contains(rate) else {
                throw r.bad("program \(code) rate_percent is not an integer 1–100")
            }
        }
        if let matters = o["matters"] {
            guard let list = matters as? [Any] else { throw r.bad("program \(code) matters is not a list") }
            for m in list {
                guard let matter = m as? [String: Any], let mc = matter["code"] as? String else { throw r.bad("program \(code) has a matter without a code") }
                guard Identifiers.isMatterCode(mc) else { throw r.bad("program \(code) matter code \(SnapshotLoader.quoted(mc)) is not 1–32 characters of a–z 0–9 _") }
            }
        }
        let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
        guard let program = try? JSONDecoder().decode(Program.self, from: data) else {
            throw r.bad("program \(code) is malformed")
        }
        if program.cardType == .medical {
            guard program.limitFen != nil, program.ratePercent != nil,
                  program.period == nil || program.period == "calendar_year" else {
                throw r.bad("medical program \(code) needs limit_fen, rate_percent 1–100 and period calendar_year")
            }
        }
        try s.program(code, String(decoding: data, as: UTF8.self))
    }

    /// A `device` record (or its delta's delete) into `s`.
    private static func applyDevice<S: SnapshotSink>(_ r: SnapshotRecord, _ s: inout S, delete: Bool) throws {
        let o = r.o
        let id = try r.key("device_id")
        if delete { try s.delete("device", [id]); return }
        let pk = try r.string("public_key")
        guard let raw = Data(base64Encoded: pk), raw.count == 32 else { throw r.bad("device \(SnapshotLoader.quoted(id)) public_key is not 32 bytes of base64") }
        try s.device(id, pk, (o["institution"] as? String) ?? "", try r.string("status", allowed: SnapshotLoader.deviceStatuses))
    }
}

/// One snapshot record being applied: its object, type and line, with the field readers that refuse it.
private struct SnapshotRecord {
    /// The record's JSON object.
    let o: [String: Any]
    /// Its `type`.
    let type: String
    /// Its line in the file, counted from 1.
    let line: Int

    /// A `bad_record` refusal of this record's line.
    func bad(_ why: String) -> SnapshotRefusal { .badRecord(line: line, why) }

    /// The key field `k`: a non-empty string, else `missing_key`.
    func key(_ k: String) throws -> String {
        guard let v = o[k] as? String, !v.isEmpty else { throw SnapshotRefusal.missingKey(line: line, type: type, key: k) }
        return v
    }

    /// The string field `k`, non-empty unless `allowEmpty`, and one of `allowed` when given.
    func string(_ k: String, allowed: Set<String>? = nil, allowEmpty: Bool = false) throws -> String {
        guard let v = o[k] as? String, allowEmpty || !v.isEmpty else { throw bad("\(type) \(k) missing") }
        if let allowed, !allowed.contains(v) { throw bad("\(type) \(k) \(SnapshotLoader.quoted(v)) is not one of \(allowed.sorted())") }
        return v
    }

    /// The person reference in key field `k`: 32 lowercase hex digits.
    func personRef(_ k: String = "person_ref") throws -> String {
        let v = try key(k)
        guard Identifiers.isPersonRef(v) else { throw bad("\(type) \(k) \(SnapshotLoader.quoted(v)) is not 32 lowercase hex digits") }
        return v
    }

    /// `v` (from `field`) when it is a program code.
    func programCode(_ v: String, _ field: String) throws -> String {
        guard Identifiers.isProgramCode(v) else { throw bad("\(type) \(field) \(SnapshotLoader.quoted(v)) is not 1–16 characters of A–Z 0–9 -") }
        return v
    }
}
