import Crypto
import Entitlements
import Foundation
import GRDB
import KioskStore
import Testing

@Suite struct SnapshotInstallTests {
    func store() throws -> KioskStore { try KioskStore(path: Fixture.tempDir().appendingPathComponent("k.sqlite").path) }

    @Test func theVectorSnapshotInstalls() throws {
        let s = try store()
        let r = try s.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(r.header.snapshotID == "330782-20261122-01" && r.records == 21 && r.ignoredRecords == 0)
        let v = try #require(try s.view(cardNumber: "3307820000000017", period: "2026"))
        #expect(v.card?.status == .active && v.person?.programs == ["HM-SUBSIDY"])
        #expect(v.usage["HM-SUBSIDY"] == UsageFigures(snapshotFen: 20000))
        #expect(try s.view(cardNumber: "3307820000000017", period: "2025")?.usage["HM-SUBSIDY"]?.snapshotFen == 60000)
        #expect(try s.view(cardNumber: "3307820000000041", period: "2026")?.card?.status == .lost)
        #expect(try s.view(cardNumber: "3307820000000074", period: "2026")?.card == nil)
        #expect(try s.deviceKeys().count == 3)
    }

    /// Every refusal of snapshot spec §2 leaves the installed snapshot exactly as it was.
    @Test func refusalsLeaveTheInstalledSnapshotUntouched() throws {
        let s = try store()
        try s.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        let before = try s.view(cardNumber: "3307820000000017", period: "2026")
        func header(_ changes: [String: Any]) -> [String: Any] {
            var h = Fixture.vectorHeader
            h["issued_at"] = "2026-11-23T02:00:00Z"
            h["snapshot_id"] = "330782-20261123-01"
            for (k, v) in changes { h[k] = v }
            return h
        }
        let suspended = Fixture.vectorRecords.map { r -> [String: Any] in
            var r = r
            if r["type"] as? String == "person" { r["status"] = "suspended" }
            return r
        }
        let other = Curve25519.Signing.PrivateKey()
        var tamperedFile = try Data(contentsOf: Fixture.snapshot(header: header([:]), records: suspended))
        let i = try #require(tamperedFile.firstRange(of: Data("\"used_fen\":20000".utf8)))
        tamperedFile.replaceSubrange(i, with: Data("\"used_fen\":10000".utf8))
        let tampered = Fixture.tempDir().appendingPathComponent("t.jsonl")
        try tamperedFile.write(to: tampered)
        let noTrailer = Fixture.tempDir().appendingPathComponent("n.jsonl")
        try Data(String(decoding: try Data(contentsOf: Fixture.snapshot(header: header([:]))), as: UTF8.self)
            .split(separator: "\n").dropLast().joined(separator: "\n").appending("\n").utf8).write(to: noTrailer)

        let cases: [(URL, String)] = [
            (try Fixture.snapshot(header: header([:]), records: suspended, key: other), "signature_invalid"),
            (try Fixture.snapshot(header: header(["authority_key_id": "nobody"]), records: suspended), "authority_key_untrusted"),
            (tampered, "sha256_mismatch"),
            (try Fixture.snapshot(header: header([:]), records: suspended, recordsOverride: 5), "record_count_mismatch"),
            (try Fixture.snapshot(header: header([:]), records: suspended, raw: ["{not json"]), "not_json"),
            (try Fixture.snapshot(header: header([:]), records: suspended + [["type": "person", "status": "active", "programs": []]]), "missing_key"),
            (try Fixture.snapshot(header: header([:]), records: suspended + [["type": "card", "card_number": "1", "id_hash": "x", "status": "weird"]]), "bad_record"),
            (try Fixture.snapshot(header: header(["kind": "delta", "base_snapshot_id": "330782-20261101-01"]), records: suspended), "base_not_installed"),
            (try Fixture.snapshot(header: header(["issued_at": "2026-11-22T02:00:00Z"]), records: suspended), "not_newer"),
            (try Fixture.snapshot(header: header(["region": "330783"]), records: suspended), "region_differs"),
            (try Fixture.snapshot(header: header(["id_salt": Data(repeating: 7, count: 16).base64EncodedString()]), records: suspended), "salt_differs"),
            (try Fixture.snapshot(header: header(["format_version": 2]), records: suspended), "bad_header"),
            (noTrailer, "no_trailer"),
        ]
        for (file, code) in cases {
            do {
                _ = try s.installSnapshot(at: file, trustedAuthorities: Fixture.authorities, now: Fixture.now)
                Issue.record("installed a snapshot that should be refused with \(code)")
            } catch let r as SnapshotRefusal {
                #expect(r.code == code, "\(r)")
                #expect(!r.description.contains("\n"))
            }
            #expect(try s.view(cardNumber: "3307820000000017", period: "2026") == before)
            #expect(try s.installedSnapshot()?.header.snapshotID == "330782-20261122-01")
        }
        // The same file, correctly signed, does install: the refusals were for their reasons.
        try s.installSnapshot(at: Fixture.snapshot(header: header([:]), records: suspended), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(try s.view(cardNumber: "3307820000000017", period: "2026")?.person?.status == .suspended)
    }

    @Test func deltasReplaceAndDeleteEntries() throws {
        let s = try store()
        try s.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        var h = Fixture.vectorHeader
        h["kind"] = "delta"; h["base_snapshot_id"] = "330782-20261122-01"; h["snapshot_id"] = "330782-20261122-02"; h["issued_at"] = "2026-11-22T08:00:00Z"
        let ih17 = "ab0c8ad7629e95b976c51368c5dd25b377165922036e377038cdf1fe8ec10595"
        let delta = try Fixture.snapshot(header: h, records: [
            ["type": "person", "id_hash": ih17, "status": "suspended", "status_reason": "停保", "programs": ["HM-SUBSIDY"]],
            ["type": "card", "card_number": "3307820000000066", "op": "delete"],
            ["type": "usage", "id_hash": ih17, "program": "HM-SUBSIDY", "period": "2026", "used_fen": 25000],
            ["type": "future_thing", "x": 1],
        ])
        let r = try s.installSnapshot(at: delta, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(r.ignoredRecords == 1)
        let v = try s.view(cardNumber: "3307820000000017", period: "2026")
        #expect(v?.person?.status == .suspended && v?.usage["HM-SUBSIDY"]?.snapshotFen == 25000)
        #expect(try s.view(cardNumber: "3307820000000066", period: "2026")?.card == nil)
        #expect(try s.view(cardNumber: "3307820000000058", period: "2026")?.card?.status == .active)
        // The same delta again: its base is no longer installed.
        #expect(throws: SnapshotRefusal.wrongBase(expected: "330782-20261122-01", installed: "330782-20261122-02")) {
            try s.installSnapshot(at: delta, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        }
    }

    /// A full snapshot replaces persons, cards and usage entirely (they go through staging
    /// tables and are copied in key order): what it leaves out is gone, and when a key comes
    /// twice the later line wins.
    @Test func aFullSnapshotReplacesEverythingAndTheLastLineOfAKeyWins() throws {
        let s = try store()
        try s.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        var h = Fixture.vectorHeader
        h["snapshot_id"] = "330782-20261123-01"; h["issued_at"] = "2026-11-23T02:00:00Z"
        let ih17 = "ab0c8ad7629e95b976c51368c5dd25b377165922036e377038cdf1fe8ec10595"
        let kept = Fixture.vectorRecords.filter { r in
            guard let type = r["type"] as? String else { return true }
            switch type {
            case "card": return r["card_number"] as? String == "3307820000000017"
            case "person", "usage": return r["id_hash"] as? String == ih17
            default: return true
            }
        }
        let full = try Fixture.snapshot(header: h, records: kept + [
            ["type": "person", "id_hash": ih17, "status": "suspended", "status_reason": "停保", "programs": ["HM-SUBSIDY"]],
            ["type": "usage", "id_hash": ih17, "program": "HM-SUBSIDY", "period": "2026", "used_fen": 33300],
        ])
        let r = try s.installSnapshot(at: full, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(r.header.kind == "full" && r.records == kept.count + 2)
        let v = try #require(try s.view(cardNumber: "3307820000000017", period: "2026"))
        #expect(v.person?.status == .suspended && v.usage["HM-SUBSIDY"]?.snapshotFen == 33300)
        #expect(try s.view(cardNumber: "3307820000000058", period: "2026")?.card == nil)
        #expect(try s.view(cardNumber: "3307820000000041", period: "2026")?.card == nil)
        #expect(try s.deviceKeys().count == 3)
    }

    @Test func aMissingFileAndAnEmptyFileAreRefused() throws {
        let s = try store()
        #expect(throws: SnapshotRefusal.self) { try s.installSnapshot(at: URL(fileURLWithPath: "/nonexistent"), trustedAuthorities: Fixture.authorities, now: Fixture.now) }
        let empty = Fixture.tempDir().appendingPathComponent("e.jsonl")
        try Data().write(to: empty)
        #expect(throws: SnapshotRefusal.emptyFile) { try s.installSnapshot(at: empty, trustedAuthorities: Fixture.authorities, now: Fixture.now) }
        #expect(try s.installedSnapshot() == nil)
    }
}
