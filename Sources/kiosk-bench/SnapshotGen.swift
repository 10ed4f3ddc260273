import ArgumentParser
import Crypto
import KioskProtocol
import Foundation
import KioskStore
import TestVectors

/// A synthetic region: person `i` has a `person_ref` and a card number that are pure
/// functions of the seed and `i`, so a delta can name persons of its base without reading
/// it. The `person_ref` is 16 random bytes (snapshot spec v2: never derived from an identity
/// number): the `i`-th 16 bytes of one SplitMix64 stream, reached directly (SplitMix64's
/// state after `k` draws is `seed + k·γ`), so nothing is held per person.
struct SyntheticPopulation {
    let seed: UInt64
    static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    init(seed: UInt64) { self.seed = seed ^ 0x9E50_4EF5_0000_0000 }

    /// Person `i`'s `person_ref`: 32 lowercase hex digits.
    func personRef(_ i: Int) -> String {
        var rng = SplitMix64(seed: seed &+ UInt64(truncatingIfNeeded: i) &* 2 &* SyntheticPopulation.gamma)
        return SnapshotWriter.personRef(using: &rng)
    }

    /// The public key (`DF29`) of one of person `i`'s cards, base64: an Ed25519 key whose seed
    /// is 32 bytes of a second stream (only with `--card-keys`: it costs a key derivation).
    func cardPublicKey(_ number: String, _ i: Int) -> String {
        cardPrivateKey(number, i).publicKey.rawRepresentation.base64EncodedString()
    }

    /// The card's own key, which signs its acknowledgements (`kiosk-bench decide --card-acks`).
    func cardPrivateKey(_ number: String, _ i: Int) -> Curve25519.Signing.PrivateKey {
        // Draws 8i+1…8i+4 of the card-key stream for the first card, 8i+5…8i+8 for a replacement.
        let slot = UInt64(truncatingIfNeeded: i) &* 8 &+ (number.hasPrefix("3307828") ? 4 : 0)
        var rng = SplitMix64(seed: (seed ^ 0xCA7D_0000_0000_0000) &+ slot &* SyntheticPopulation.gamma)
        var raw = [UInt8]()
        for _ in 0..<4 { withUnsafeBytes(of: rng.next().littleEndian) { raw.append(contentsOf: $0) } }
        return try! Curve25519.Signing.PrivateKey(rawRepresentation: raw)
    }

    /// "3307829" + 9-digit index: 16 digits.
    static func cardNumber(_ i: Int) -> String { "3307829" + String(format: "%09d", i) }
    /// A replacement card issued by a delta: "3307828" + 9-digit index.
    static func replacementCardNumber(_ i: Int) -> String { "3307828" + String(format: "%09d", i) }

    /// The most persons: card numbers have nine digits of index.
    static let maxPersons = 999_999_999
}

struct SnapshotGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot-gen",
        abstract: "Write a deterministic signed snapshot (test authority): N persons with one card each, or a delta of M changes.")

    @Option(help: "Persons in the (base) snapshot.") var persons: Int
    @Option(help: "Output file.") var out: String
    @Option(help: "Write a delta on this base snapshot id instead of a full snapshot.") var deltaOf: String?
    @Option(help: "Record lines in the delta.") var changes = 10000
    @Option(help: "Seed of the generator (a delta must be made with its base's seed: it names the base's persons by it).") var seed: UInt64 = 20_261_122
    @Flag(help: "Give every card its public_key (DF29; optional in snapshots, ignored by kiosks).") var cardKeys = false
    @Option(help: "Also carry this snapshot's person, card and usage lines (a full: e.g. the vectors', so their cards stay known).")
    var extra: String?
    @Option(help: "snapshot_id (default 330782-20261122-01 for a full, -02 for a delta).") var snapshotID: String?
    @Option(help: "issued_at (RFC 3339; default 02:00 for a full, 02:30 for a delta, on 2026-11-22).") var issuedAt: String?

    static let fullID = "330782-20261122-01"
    static let deltaID = "330782-20261122-02"

    func validate() throws {
        guard changes > 0 else { throw ValidationError("--changes must be positive") }
        guard persons > 0, persons + changes <= SyntheticPopulation.maxPersons else {
            throw ValidationError("--persons + --changes must be at most 999,999,999 (nine digits of card index)")
        }
    }

    func run() throws {
        let population = SyntheticPopulation(seed: seed)
        let delta = deltaOf != nil
        let id = snapshotID ?? (delta ? SnapshotGen.deltaID : SnapshotGen.fullID)
        // A delta is issued 30 minutes after its base; both expire a month later.
        var times = delta
            ? ("2026-11-22T02:30:00Z", "2026-12-22T02:30:00Z", "2026-11-22T02:29:00Z")
            : ("2026-11-22T02:00:00Z", "2026-12-22T02:00:00Z", "2026-11-22T01:59:00Z")
        if let issuedAt {
            guard Timestamp.date(issuedAt) != nil else { throw ValidationError("--issued-at is not an RFC 3339 time") }
            times.0 = issuedAt
        }
        let header: [String: Any] = [
            "format": "benefit-snapshot", "format_version": 2, "snapshot_id": id, "kind": delta ? "delta" : "full",
            "base_snapshot_id": deltaOf ?? NSNull(), "region": TestAuthority.region,
            "issued_at": times.0, "expires_at": times.1, "settled_through": times.2,
            "authority_key_id": TestAuthority.keyID,
        ]
        let url = URL(fileURLWithPath: out)
        let t0 = monotonicSeconds()
        let writer = try SnapshotWriter(url: url, header: header, authorityKey: try TestAuthority.privateKey())
        var records = 0
        func add(_ r: [String: Any]) throws { try writer.add(r); records += 1 }

        if let base = deltaOf {
            var rng = SplitMix64(seed: seed ^ 0xDE17A)
            try writeDelta(base: base, population, &rng, add)
        } else {
            var rng = SplitMix64(seed: seed)
            try writeFull(population, &rng, add)
        }
        try writer.finish()
        let bytes = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? -1
        print(String(format: "snapshot_gen kind=%@ snapshot_id=%@ records=%ld bytes=%ld gen_seconds=%.2f peak_rss_mb=%.1f",
                     delta ? "delta" : "full", id, records, bytes, monotonicSeconds() - t0, Memory.peakMB()))
    }

    static var programs: [[String: Any]] { [
        ["type": "program", "code": "HM-SUBSIDY", "card_type": "medical", "name": "惠民医疗费用贴补", "limit_fen": 60000,
         "rate_percent": 100, "period": "calendar_year", "categories": ["01", "02", "03", "04", "05", "09"], "priority": 1],
        ["type": "program", "code": "HM-CS-OUTPATIENT", "card_type": "medical", "name": "集中供养人员门诊费补助", "limit_fen": 45000,
         "rate_percent": 100, "period": "calendar_year", "categories": ["02", "03"], "priority": 2],
        ["type": "program", "code": "LA-DIRECT", "card_type": "legal_aid", "name": "凭卡直接申请法律援助",
         "categories": ["01", "02", "03", "04", "05", "06", "09"], "priority": 1,
         "matters": [["code": "social_insurance", "name": "请求给予社会保险待遇"],
                     ["code": "relief_payment", "name": "请求发放抚恤金、救济金"]]],
    ] }

    /// The test devices of `specs/vectors/test-keys.json`.
    static var devices: [[String: Any]] { [
        ["type": "device", "device_id": "KSK-TEST-0001", "public_key": "9E1jNbDMpJhD/biF6eDsN3fYo6jiQjDT/012z6KykJc=", "institution": "330782-H01", "status": "active"],
        ["type": "device", "device_id": "KSK-TEST-0002", "public_key": "N5K1zztdUDW7IP4DavRGPM7ixbkdWH/AsDTaKYD+gWk=", "institution": "330782-H02", "status": "active"],
        ["type": "device", "device_id": "KSK-TEST-0003", "public_key": "l4JDAbwdGgt/IDRRqgrg/rHTZTMTU1Hjhy2aB0V8ACU=", "institution": "330782-T01", "status": "retired"],
    ] }

    static func personPrograms(_ rng: inout SplitMix64) -> [String] {
        let r = rng.unit()
        if r < 0.80 { return ["HM-SUBSIDY"] }
        if r < 0.90 { return ["HM-SUBSIDY", "HM-CS-OUTPATIENT"] }
        if r < 0.95 { return ["HM-SUBSIDY", "LA-DIRECT"] }
        return ["LA-DIRECT"]
    }

    static func personStatus(_ rng: inout SplitMix64) -> (String, String) {
        let r = rng.unit()
        if r < 0.97 { return ("active", "") }
        if r < 0.99 { return ("suspended", "停保") }
        return ("revoked", "救助终止")
    }

    static func cardStatus(_ rng: inout SplitMix64) -> String {
        let r = rng.unit()
        if r < 0.99 { return "active" }
        return r < 0.995 ? "lost" : "revoked"
    }

    /// used_fen for HM-SUBSIDY: one in twenty exhausted, the rest spread below the limit.
    static func usedFen(_ rng: inout SplitMix64) -> Int { rng.below(20) == 0 ? 60000 : rng.below(60000) }

    /// A `card` record; with `--card-keys`, its `public_key` too.
    func card(_ population: SyntheticPopulation, _ number: String, person i: Int, status: String) -> [String: Any] {
        var r: [String: Any] = ["type": "card", "card_number": number, "person_ref": population.personRef(i), "status": status]
        if cardKeys { r["public_key"] = population.cardPublicKey(number, i) }
        return r
    }

    /// Programs, devices, then per person: person, card and (a third of them) usage for 2026.
    func writeFull(_ population: SyntheticPopulation, _ rng: inout SplitMix64, _ add: ([String: Any]) throws -> Void) throws {
        for p in SnapshotGen.programs { try add(p) }
        for d in SnapshotGen.devices { try add(d) }
        if let extra {
            for line in try String(contentsOfFile: extra, encoding: .utf8).split(separator: "\n") {
                guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let type = o["type"] as? String, ["person", "card", "usage"].contains(type) else { continue }
                try add(o)
            }
        }
        for i in 0..<persons {
            let ref = population.personRef(i)
            let (status, reason) = SnapshotGen.personStatus(&rng)
            try add(["type": "person", "person_ref": ref, "status": status, "status_reason": reason, "programs": SnapshotGen.personPrograms(&rng)])
            try add(card(population, SyntheticPopulation.cardNumber(i), person: i, status: SnapshotGen.cardStatus(&rng)))
            if rng.below(3) == 0 {
                try add(["type": "usage", "person_ref": ref, "program": "HM-SUBSIDY", "period": "2026", "used_fen": SnapshotGen.usedFen(&rng)])
            }
        }
    }

    /// Exactly `changes` record lines on persons of the base: usage settled since, persons
    /// suspended or restored, cards lost, replacement cards, new persons, and deletions.
    func writeDelta(base: String, _ population: SyntheticPopulation, _ rng: inout SplitMix64, _ add: ([String: Any]) throws -> Void) throws {
        var written = 0
        var newPersons = 0
        while written < changes {
            let i = rng.below(persons)
            let r = rng.unit()
            if r < 0.40 {
                try add(["type": "usage", "person_ref": population.personRef(i), "program": "HM-SUBSIDY", "period": "2026", "used_fen": SnapshotGen.usedFen(&rng)])
            } else if r < 0.55 {
                let (status, reason) = rng.below(2) == 0 ? ("active", "") : SnapshotGen.personStatus(&rng)
                try add(["type": "person", "person_ref": population.personRef(i), "status": status, "status_reason": reason,
                         "programs": SnapshotGen.personPrograms(&rng)])
            } else if r < 0.65 {
                try add(card(population, SyntheticPopulation.cardNumber(i), person: i, status: ["lost", "revoked", "replaced"][rng.below(3)]))
            } else if r < 0.80 {
                try add(card(population, SyntheticPopulation.replacementCardNumber(i), person: i, status: "active"))
            } else if r < 0.90, changes - written >= 2 {
                // A person new to the region, with a first card: two lines.
                let n = persons + newPersons
                newPersons += 1
                try add(["type": "person", "person_ref": population.personRef(n), "status": "active", "status_reason": "", "programs": SnapshotGen.personPrograms(&rng)])
                try add(card(population, SyntheticPopulation.cardNumber(n), person: n, status: "active"))
                written += 1
            } else if r < 0.95 {
                try add(["type": "usage", "op": "delete", "person_ref": population.personRef(i), "program": "HM-SUBSIDY", "period": "2026"])
            } else if r < 0.98 {
                try add(["type": "card", "op": "delete", "card_number": SyntheticPopulation.cardNumber(i)])
            } else {
                try add(["type": "person", "op": "delete", "person_ref": population.personRef(i)])
            }
            written += 1
        }
    }
}
