import ArgumentParser
import Crypto
import Entitlements
import Foundation
import KioskStore
import TestVectors

/// A synthetic region: person `i` has a citizen identity number, an `id_hash` and a card
/// number that are pure functions of `i`, so a delta can name persons of its base
/// without reading it.
struct SyntheticPopulation {
    let salt: Data
    static let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    static let checkChars = Array("10X98765432".utf8)
    /// Days from 1930-01-01 over which birth dates spread (about 82 years).
    static let birthDays = 30000

    /// GB 11643: region 330782, birth date, 3-digit sequence, check character.
    /// Unique for every i below `birthDays` × 1000.
    func citizenID(_ i: Int) -> String {
        let (y, m, d) = CivilCalendar.date(days: Int64(SyntheticPopulation.days1930 + i % SyntheticPopulation.birthDays))
        let seq = (i / SyntheticPopulation.birthDays) % 1000
        let body = TestAuthority.region + String(format: "%04d%02d%02d%03d", Int(y), Int(m), Int(d), seq)
        var sum = 0
        for (c, w) in zip(body.utf8, SyntheticPopulation.weights) { sum += Int(c - 0x30) * w }
        return body + String(UnicodeScalar(SyntheticPopulation.checkChars[sum % 11]))
    }

    func idHash(_ i: Int) -> String { SnapshotWriter.idHash(citizenID: citizenID(i), salt: salt) }

    /// "3307829" + 9-digit index: 16 digits.
    static func cardNumber(_ i: Int) -> String { "3307829" + String(format: "%09d", i) }
    /// A replacement card issued by a delta: "3307828" + 9-digit index.
    static func replacementCardNumber(_ i: Int) -> String { "3307828" + String(format: "%09d", i) }

    /// Days from 1970-01-01 to 1930-01-01.
    static let days1930 = -14610
}

struct SnapshotGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot-gen",
        abstract: "Write a deterministic signed snapshot (test authority): N persons with one card each, or a delta of M changes.")

    @Option(help: "Persons in the (base) snapshot.") var persons: Int
    @Option(help: "Output file.") var out: String
    @Option(help: "Write a delta on this base snapshot id instead of a full snapshot.") var deltaOf: String?
    @Option(help: "Record lines in the delta.") var changes = 10000
    @Option(help: "Seed of the generator.") var seed: UInt64 = 20_261_122
    @Option(help: "snapshot_id (default 330782-20261122-01 for a full, -02 for a delta).") var snapshotID: String?

    static let fullID = "330782-20261122-01"
    static let deltaID = "330782-20261122-02"

    func validate() throws {
        guard persons > 0, persons < SyntheticPopulation.birthDays * 1000 else { throw ValidationError("--persons must be 1…29,999,999") }
        guard changes > 0 else { throw ValidationError("--changes must be positive") }
    }

    func run() throws {
        let salt = Data(base64Encoded: TestAuthority.idSalt)!
        let population = SyntheticPopulation(salt: salt)
        let delta = deltaOf != nil
        let id = snapshotID ?? (delta ? SnapshotGen.deltaID : SnapshotGen.fullID)
        // A delta is issued 30 minutes after its base; both expire a month later.
        let times = delta
            ? ("2026-11-22T02:30:00Z", "2026-12-22T02:30:00Z", "2026-11-22T02:29:00Z")
            : ("2026-11-22T02:00:00Z", "2026-12-22T02:00:00Z", "2026-11-22T01:59:00Z")
        let header: [String: Any] = [
            "format": "benefit-snapshot", "format_version": 1, "snapshot_id": id, "kind": delta ? "delta" : "full",
            "base_snapshot_id": deltaOf ?? NSNull(), "region": TestAuthority.region,
            "issued_at": times.0, "expires_at": times.1, "settled_through": times.2,
            "id_salt": TestAuthority.idSalt, "authority_key_id": TestAuthority.keyID,
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
        print(String(format: "snapshot_gen kind=%@ snapshot_id=%@ records=%d bytes=%d gen_seconds=%.2f peak_rss_mb=%.1f",
                     delta ? "delta" : "full", id, records, bytes, monotonicSeconds() - t0, Memory.peakMB()))
    }

    static let programs: [[String: Any]] = [
        ["type": "program", "code": "HM-SUBSIDY", "card_type": "medical", "name": "惠民医疗费用贴补", "limit_fen": 60000,
         "rate_percent": 100, "period": "calendar_year", "categories": ["01", "02", "03", "04", "05", "09"], "priority": 1],
        ["type": "program", "code": "HM-CS-OUTPATIENT", "card_type": "medical", "name": "集中供养人员门诊费补助", "limit_fen": 45000,
         "rate_percent": 100, "period": "calendar_year", "categories": ["02", "03"], "priority": 2],
        ["type": "program", "code": "LA-DIRECT", "card_type": "legal_aid", "name": "凭卡直接申请法律援助",
         "categories": ["01", "02", "03", "04", "05", "06", "09"], "priority": 1,
         "matters": [["code": "social_insurance", "name": "请求给予社会保险待遇"],
                     ["code": "relief_payment", "name": "请求发放抚恤金、救济金"]]],
    ]

    /// The test devices of `specs/vectors/test-keys.json`.
    static let devices: [[String: Any]] = [
        ["type": "device", "device_id": "KSK-TEST-0001", "public_key": "9E1jNbDMpJhD/biF6eDsN3fYo6jiQjDT/012z6KykJc=", "institution": "330782-H01", "status": "active"],
        ["type": "device", "device_id": "KSK-TEST-0002", "public_key": "N5K1zztdUDW7IP4DavRGPM7ixbkdWH/AsDTaKYD+gWk=", "institution": "330782-H02", "status": "active"],
        ["type": "device", "device_id": "KSK-TEST-0003", "public_key": "l4JDAbwdGgt/IDRRqgrg/rHTZTMTU1Hjhy2aB0V8ACU=", "institution": "330782-T01", "status": "retired"],
    ]

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

    /// Programs, devices, then per person: person, card and (a third of them) usage for 2026.
    func writeFull(_ population: SyntheticPopulation, _ rng: inout SplitMix64, _ add: ([String: Any]) throws -> Void) throws {
        for p in SnapshotGen.programs { try add(p) }
        for d in SnapshotGen.devices { try add(d) }
        for i in 0..<persons {
            let idHash = population.idHash(i)
            let (status, reason) = SnapshotGen.personStatus(&rng)
            try add(["type": "person", "id_hash": idHash, "status": status, "status_reason": reason, "programs": SnapshotGen.personPrograms(&rng)])
            try add(["type": "card", "card_number": SyntheticPopulation.cardNumber(i), "id_hash": idHash, "status": SnapshotGen.cardStatus(&rng)])
            if rng.below(3) == 0 {
                try add(["type": "usage", "id_hash": idHash, "program": "HM-SUBSIDY", "period": "2026", "used_fen": SnapshotGen.usedFen(&rng)])
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
                try add(["type": "usage", "id_hash": population.idHash(i), "program": "HM-SUBSIDY", "period": "2026", "used_fen": SnapshotGen.usedFen(&rng)])
            } else if r < 0.55 {
                let (status, reason) = rng.below(2) == 0 ? ("active", "") : SnapshotGen.personStatus(&rng)
                try add(["type": "person", "id_hash": population.idHash(i), "status": status, "status_reason": reason,
                         "programs": SnapshotGen.personPrograms(&rng)])
            } else if r < 0.65 {
                try add(["type": "card", "card_number": SyntheticPopulation.cardNumber(i), "id_hash": population.idHash(i),
                         "status": ["lost", "revoked", "replaced"][rng.below(3)]])
            } else if r < 0.80 {
                try add(["type": "card", "card_number": SyntheticPopulation.replacementCardNumber(i), "id_hash": population.idHash(i), "status": "active"])
            } else if r < 0.90, changes - written >= 2 {
                // A person new to the region, with a first card: two lines.
                let n = persons + newPersons
                newPersons += 1
                let idHash = population.idHash(n)
                try add(["type": "person", "id_hash": idHash, "status": "active", "status_reason": "", "programs": SnapshotGen.personPrograms(&rng)])
                try add(["type": "card", "card_number": SyntheticPopulation.cardNumber(n), "id_hash": idHash, "status": "active"])
                written += 1
            } else if r < 0.95 {
                try add(["type": "usage", "op": "delete", "id_hash": population.idHash(i), "program": "HM-SUBSIDY", "period": "2026"])
            } else if r < 0.98 {
                try add(["type": "card", "op": "delete", "card_number": SyntheticPopulation.cardNumber(i)])
            } else {
                try add(["type": "person", "op": "delete", "id_hash": population.idHash(i)])
            }
            written += 1
        }
    }
}
