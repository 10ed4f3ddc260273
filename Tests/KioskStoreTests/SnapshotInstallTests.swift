import Crypto
import KioskProtocol
import Foundation
import Synchronization
import GRDB
@testable import KioskStore
import TestVectors
import Testing

@Suite struct SnapshotInstallTests {
    func store() throws -> KioskStore { try KioskStore(path: Fixture.tempDir().appendingPathComponent("k.sqlite").path) }

    /// The vector snapshot's `person_ref`s (cards.json's `DF2A`).
    static let ref17 = "997bb21c2fd71da3a74ad22ada8a3d3e"
    static let ref58 = "331d1fac9e9b3a6ad0cf5b59f4f64efb"

    /// A store holding the vector snapshot.
    func installedStore() throws -> KioskStore {
        let s = try store()
        try s.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        return s
    }

    /// Everything an install writes (snapshot tables, meta and clock floor), row by row.
    static func contents(_ s: KioskStore) throws -> [String] {
        try s.pool.read { db in
            try ["snapshot_meta", "program", "device", "person", "card", "usage", "clock_floor"].flatMap { table in
                try Row.fetchAll(db, sql: "SELECT * FROM \(table)").map { "\(table) \($0.description)" }.sorted()
            }
        }
    }

    /// The vector header, issued 30 minutes later under a new id (still before `Fixture.now`).
    static func nextHeader(_ changes: [String: Any] = [:]) -> [String: Any] {
        var h = Fixture.vectorHeader
        h["issued_at"] = "2026-11-22T02:30:00Z"
        h["snapshot_id"] = "330782-20261122-02"
        for (k, v) in changes { h[k] = v }
        return h
    }

    /// Issue 11's program cache: the platform lowers a program's limit in a newer full. The
    /// kiosk that decided under the old program (its decoded text cached) decides under the new
    /// one at once: a changed text is another key, never the old program served again.
    @Test func aLoweredLimitInANewerSnapshotHoldsAtOnce() throws {
        let s = try store()
        try s.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(try s.view(cardNumber: "3307820000000017", period: "2026")?.programs.first?.limitFen == 60000)
        var header = Fixture.vectorHeader
        header["snapshot_id"] = "330782-20261122-02"
        header["issued_at"] = "2026-11-22T02:30:00Z"
        var records = Fixture.vectorRecords
        for i in records.indices where records[i]["type"] as? String == "program" && records[i]["code"] as? String == "HM-SUBSIDY" {
            records[i]["limit_fen"] = 25000
        }
        try s.installSnapshot(at: try Fixture.snapshot(header: header, records: records), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        let v = try #require(try s.view(cardNumber: "3307820000000017", period: "2026"))
        #expect(v.programs.first?.limitFen == 25000)
        // 20,000 of the 25,000 used: a ¥100 bill gets at most ¥50, never the old allowance.
        let card = CardFacts(cardNumber: "3307820000000017", kind: .medical, category: "01", expired: false)
        let d = Decide.subsidy(card: card, view: v, billFen: 10000, now: Fixture.now)
        #expect(d.isGranted && d.subsidyFen == 5000, "\(d)")
    }

    // MARK: - record lines as text (exact numbers: 1.0, 1e3, true …)

    static func program(code: String = "HM-TEST", limit: String = "1000", rate: String = "50", name: String = "测试贴补") -> String {
        #"{"type":"program","code":"\#(code)","card_type":"medical","name":"\#(name)","limit_fen":\#(limit),"rate_percent":\#(rate),"period":"calendar_year","categories":["01"],"priority":3}"#
    }
    static func legalAid(matter: String = "social_insurance", matterName: String = "社会保险") -> String {
        #"{"type":"program","code":"LA-TEST","card_type":"legal_aid","name":"法律援助","categories":["01"],"priority":2,"matters":[{"code":"\#(matter)","name":"\#(matterName)"}]}"#
    }
    static func person(ref: String = "0123456789abcdef0123456789abcdef", programs: String = #""HM-SUBSIDY""#, reason: String = "") -> String {
        #"{"type":"person","person_ref":"\#(ref)","status":"active","status_reason":"\#(reason)","programs":[\#(programs)]}"#
    }
    static func card(number: String = "3307820000000090", ref: String = "0123456789abcdef0123456789abcdef") -> String {
        #"{"type":"card","card_number":"\#(number)","person_ref":"\#(ref)","status":"active"}"#
    }
    static func usage(ref: String = "0123456789abcdef0123456789abcdef", program: String = "HM-SUBSIDY", used: String = "100") -> String {
        #"{"type":"usage","person_ref":"\#(ref)","program":"\#(program)","period":"2026","used_fen":\#(used)}"#
    }

    /// A signed snapshot: the vector records, then `lines` as text. The first of `lines` is
    /// line 1 (header) + 21 (records) + 1 = 23 of the file.
    static func file(_ lines: [String], header: [String: Any] = nextHeader()) throws -> URL {
        try Fixture.snapshot(header: header, records: Fixture.vectorRecords, raw: lines)
    }
    static let firstExtraLine = Fixture.vectorRecords.count + 2

    /// `bad` (each a list of extra lines) is refused with `bad_record` naming line
    /// `firstExtraLine + offset`, leaving the installed snapshot exactly as it was; `good`
    /// (the same lines keeping the rule) installs.
    func expectRule(_ bad: [[String]], offset: Int = 0, good: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let s = try installedStore()
        let before = try SnapshotInstallTests.contents(s)
        let line = SnapshotInstallTests.firstExtraLine + offset
        for lines in bad {
            do {
                let r = try s.installSnapshot(at: SnapshotInstallTests.file(lines), trustedAuthorities: Fixture.authorities, now: Fixture.now)
                Issue.record("installed \(lines) (\(r.records) records): it breaks a rule", sourceLocation: sourceLocation)
            } catch let r as SnapshotRefusal {
                #expect(r.code == "bad_record", "\(r)", sourceLocation: sourceLocation)
                if case .badRecord(let n, _) = r { #expect(n == line, "\(r)", sourceLocation: sourceLocation) }
                #expect(r.description.contains("line \(line):") && !r.description.contains("\n"), "\(r)", sourceLocation: sourceLocation)
            }
            #expect(try SnapshotInstallTests.contents(s) == before, "\(lines)", sourceLocation: sourceLocation)
        }
        // The same file keeping the rule installs: the refusals were for the rule.
        let fresh = try installedStore()
        let r = try fresh.installSnapshot(at: SnapshotInstallTests.file(good), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(r.header.snapshotID == "330782-20261122-02" && r.records == Fixture.vectorRecords.count + good.count, sourceLocation: sourceLocation)
    }

    // MARK: - the vector and v1 tests moved to v2

    /// The same with ranges of one row (kioskd's sync passes fewer rows per range than the default).
    @Test(arguments: [KioskStore.defaultRowsPerRange, 1])
    func theVectorSnapshotInstalls(rowsPerRange: Int) throws {
        let s = try store()
        let r = try s.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now,
                                      rowsPerRange: rowsPerRange)
        #expect(r.header.snapshotID == "330782-20261122-01" && r.records == 21 && r.ignoredRecords == 0)
        #expect(r.header.kind == "full" && r.header.region == "330782" && r.header.issuedAt == "2026-11-22T02:00:00Z")
        let v = try #require(try s.view(cardNumber: "3307820000000017", period: "2026"))
        #expect(v.card == CardEntry(cardNumber: "3307820000000017", personRef: SnapshotInstallTests.ref17, status: .active))
        #expect(v.person == Person(personRef: SnapshotInstallTests.ref17, status: .active, programs: ["HM-SUBSIDY"]))
        #expect(v.programs.map(\.code) == ["HM-SUBSIDY"] && v.programs.first?.limitFen == 60000 && v.programs.first?.ratePercent == 100)
        #expect(v.usage["HM-SUBSIDY"] == UsageFigures(snapshotFen: 20000))
        #expect(try s.view(cardNumber: "3307820000000017", period: "2025")?.usage["HM-SUBSIDY"]?.snapshotFen == 60000)
        let la = try #require(try s.view(cardNumber: "3307820000100025", period: "2026"))
        #expect(la.person?.programs == ["LA-DIRECT"] && la.programs.first?.matters?.count == 8)
        let suspended = try #require(try s.view(cardNumber: "3307820000000033", period: "2026"))
        #expect(suspended.person?.status == .suspended && suspended.person?.statusReason == "停保")
        #expect(try s.view(cardNumber: "3307820000000041", period: "2026")?.card?.status == .lost)
        let v58 = try #require(try s.view(cardNumber: "3307820000000058", period: "2026"))
        #expect(v58.card?.personRef == SnapshotInstallTests.ref58 && v58.person?.programs == ["HM-SUBSIDY", "HM-CS-OUTPATIENT", "LA-DIRECT"])
        #expect(v58.usage["HM-SUBSIDY"]?.snapshotFen == 55000 && (v58.usage["HM-CS-OUTPATIENT"]?.snapshotFen ?? 0) == 0)
        #expect(try s.view(cardNumber: "3307820000000066", period: "2026")?.usage["HM-SUBSIDY"]?.snapshotFen == 60000)
        #expect(try s.view(cardNumber: "3307820000000074", period: "2026")?.card == nil)
        #expect(try s.deviceKeys().count == 3)
        // Sync spec §6: the clock floor learnt the snapshot's issued_at.
        #expect(try s.clockFloor().floor == Timestamp.date("2026-11-22T02:00:00Z"))
        let rows = try s.pool.read { db in
            try ["person", "card", "usage", "program", "device"].map { try Int.fetchOne(db, sql: "SELECT count(*) FROM \($0)") ?? -1 }
        }
        #expect(rows == [5, 6, 4, 3, 3])
    }

    /// Every refusal of snapshot spec §2 leaves the installed snapshot exactly as it was.
    @Test func refusalsLeaveTheInstalledSnapshotUntouched() throws {
        let s = try installedStore()
        let before = try SnapshotInstallTests.contents(s)
        func header(_ changes: [String: Any]) -> [String: Any] {
            var h = Fixture.vectorHeader
            h["issued_at"] = "2026-11-22T02:40:00Z"
            h["snapshot_id"] = "330782-20261122-02"
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
            (try Fixture.snapshot(header: header([:]), records: suspended + [["type": "card", "card_number": "3307820000000090",
                                                                             "person_ref": SnapshotInstallTests.ref17, "status": "weird"]]), "bad_record"),
            (try Fixture.snapshot(header: header(["kind": "delta", "base_snapshot_id": "330782-20261101-01"]), records: suspended), "base_not_installed"),
            (try Fixture.snapshot(header: header(["issued_at": "2026-11-22T02:00:00Z"]), records: suspended), "not_newer"),
            (try Fixture.snapshot(header: header(["issued_at": "2026-11-22T01:00:00Z"]), records: suspended), "not_newer"),
            (try Fixture.snapshot(header: header(["issued_at": "2026-11-22T03:11:00Z"]), records: suspended), "issued_in_future"),
            (try Fixture.snapshot(header: header(["region": "330783"]), records: suspended), "region_differs"),
            (try Fixture.snapshot(header: header(["format_version": 1]), records: suspended), "bad_header"),
            (try Fixture.snapshot(header: header(["format_version": 3]), records: suspended), "bad_header"),
            (try Fixture.snapshot(header: header(["format": "benefit-roster"]), records: suspended), "bad_header"),
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
            #expect(try SnapshotInstallTests.contents(s) == before, "\(code)")
        }
        // The same file, correctly signed, does install: the refusals were for their reasons.
        try s.installSnapshot(at: Fixture.snapshot(header: header([:]), records: suspended), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(try s.view(cardNumber: "3307820000000017", period: "2026")?.person?.status == .suspended)
        #expect(try s.clockFloor().floor == Timestamp.date("2026-11-22T02:40:00Z"))
    }

    @Test func deltasReplaceAndDeleteEntries() throws {
        let s = try installedStore()
        var h = Fixture.vectorHeader
        h["kind"] = "delta"; h["base_snapshot_id"] = "330782-20261122-01"; h["snapshot_id"] = "330782-20261122-02"; h["issued_at"] = "2026-11-22T02:50:00Z"
        let ref17 = SnapshotInstallTests.ref17
        let delta = try Fixture.snapshot(header: h, records: [
            ["type": "person", "person_ref": ref17, "status": "suspended", "status_reason": "停保", "programs": ["HM-SUBSIDY"], "nickname": "an unknown field"],
            ["type": "card", "card_number": "3307820000000066", "op": "delete"],
            ["type": "usage", "person_ref": ref17, "program": "HM-SUBSIDY", "period": "2026", "used_fen": 25000],
            ["type": "usage", "person_ref": ref17, "program": "HM-SUBSIDY", "period": "2025", "op": "delete"],
            ["type": "future_thing", "x": 1],
        ])
        let r = try s.installSnapshot(at: delta, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(r.ignoredRecords == 1 && r.records == 5)
        let v = try s.view(cardNumber: "3307820000000017", period: "2026")
        #expect(v?.person?.status == .suspended && v?.usage["HM-SUBSIDY"]?.snapshotFen == 25000)
        #expect(try s.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM usage WHERE period = '2025'") } == 0)   // was 60000
        #expect(try s.view(cardNumber: "3307820000000066", period: "2026")?.card == nil)
        #expect(try s.view(cardNumber: "3307820000000058", period: "2026")?.card?.status == .active)
        #expect(try s.installedSnapshot()?.records == 21 + 5)
        #expect(try s.clockFloor().floor == Timestamp.date("2026-11-22T02:50:00Z"))
        // The same delta again: its base is no longer installed.
        #expect(throws: SnapshotRefusal.wrongBase(expected: "330782-20261122-01", installed: "330782-20261122-02")) {
            try s.installSnapshot(at: delta, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        }
    }

    /// A delta's deletions name their keys, and the keys obey the rules too.
    @Test func aDeltaDeletionWithABadKeyIsRefused() throws {
        let s = try installedStore()
        let before = try SnapshotInstallTests.contents(s)
        var h = Fixture.vectorHeader
        h["kind"] = "delta"; h["base_snapshot_id"] = "330782-20261122-01"; h["snapshot_id"] = "330782-20261122-02"; h["issued_at"] = "2026-11-22T02:50:00Z"
        for (record, bad) in [([#"{"type":"card","op":"delete","card_number":"330782000000006"}"#], "card_number"),
                              ([#"{"type":"person","op":"delete","person_ref":"997BB21C2FD71DA3A74AD22ADA8A3D3E"}"#], "person_ref")] {
            let file = try Fixture.snapshot(header: h, records: [], raw: record)
            do {
                _ = try s.installSnapshot(at: file, trustedAuthorities: Fixture.authorities, now: Fixture.now)
                Issue.record("installed a delta deleting by a bad \(bad)")
            } catch let r as SnapshotRefusal {
                #expect(r.code == "bad_record" && r.description.contains("line 2:") && r.description.contains(bad), "\(r)")
            }
            #expect(try SnapshotInstallTests.contents(s) == before)
        }
    }

    /// A full snapshot replaces persons, cards and usage entirely (they go through staging
    /// tables and are copied in key order): what it leaves out is gone, and when a key comes
    /// twice the later line wins.
    @Test func aFullSnapshotReplacesEverythingAndTheLastLineOfAKeyWins() throws {
        let s = try installedStore()
        let ref17 = SnapshotInstallTests.ref17
        let kept = Fixture.vectorRecords.filter { r in
            guard let type = r["type"] as? String else { return true }
            switch type {
            case "card": return r["card_number"] as? String == "3307820000000017"
            case "person", "usage": return r["person_ref"] as? String == ref17
            default: return true
            }
        }
        let full = try Fixture.snapshot(header: SnapshotInstallTests.nextHeader(), records: kept + [
            ["type": "person", "person_ref": ref17, "status": "suspended", "status_reason": "停保", "programs": ["HM-SUBSIDY"]],
            ["type": "usage", "person_ref": ref17, "program": "HM-SUBSIDY", "period": "2026", "used_fen": 33300],
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
        #expect(try s.clockFloor().floor == nil)
    }

    // MARK: - snapshot spec v2 §1 "Rules", one test each

    @Test func aProgramCodeIsOneToSixteenOfUppercaseDigitsAndHyphen() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.program(code: "hm-test")], [P.program(code: "HM TEST")], [P.program(code: "HM_TEST")],
            [P.program(code: "HM-TEST-123456789")],                      // 17 characters
            [P.program(code: "ＨＭ-TEST")],                                // fullwidth letters
            [P.person(programs: #""hm-subsidy""#)],                       // in a person's programs
            [P.person(programs: #""HM-SUBSIDY","HM-SUBSIDY-1234567""#)],
            [P.usage(program: "HM-SUBSIDY ")],                            // in a usage record
        ], good: [P.program(code: "HM-TEST-12345678"), P.person(programs: #""HM-SUBSIDY","HM-TEST-12345678""#),
                  P.usage(program: "HM-TEST-12345678")])
        // An empty code misses its key.
        let s = try installedStore()
        #expect(throws: SnapshotRefusal.missingKey(line: P.firstExtraLine, type: "program", key: "code")) {
            try s.installSnapshot(at: P.file([P.program(code: "")]), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        }
    }

    @Test func aMatterCodeIsOneToThirtyTwoOfLowercaseDigitsAndUnderscore() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.legalAid(matter: "Social_insurance")], [P.legalAid(matter: "social-insurance")], [P.legalAid(matter: "social insurance")],
            [P.legalAid(matter: "")], [P.legalAid(matter: String(repeating: "a", count: 33))], [P.legalAid(matter: "社保")],
        ], good: [P.legalAid(matter: "abcdefghijklmnopqrstuvwxyz_01234")])
    }

    @Test func limitFenIsAPositiveIntegerOfAtMostAHundredMillion() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.program(limit: "0")], [P.program(limit: "-1")], [P.program(limit: "100000001")],
            [P.program(limit: "1.0")], [P.program(limit: "1e3")], [P.program(limit: "60000.5")],
            [P.program(limit: "true")], [P.program(limit: #""60000""#)], [P.program(limit: "null")],
            [P.program(limit: "99999999999999999999")],
        ], good: [P.program(limit: "100000000")])
        // A medical program without limit_fen is refused too.
        let s = try installedStore()
        let missing = #"{"type":"program","code":"HM-TEST","card_type":"medical","name":"x","rate_percent":50,"period":"calendar_year","categories":["01"],"priority":3}"#
        #expect(throws: SnapshotRefusal.self) { try s.installSnapshot(at: P.file([missing]), trustedAuthorities: Fixture.authorities, now: Fixture.now) }
    }

    @Test func ratePercentIsAnIntegerFromOneToAHundred() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.program(rate: "0")], [P.program(rate: "101")], [P.program(rate: "-50")], [P.program(rate: "50.0")],
            [P.program(rate: "5e1")], [P.program(rate: #""50""#)], [P.program(rate: "true")],
        ], good: [P.program(code: "HM-ONE", rate: "1"), P.program(code: "HM-ALL", rate: "100")])
    }

    /// Issue 21 (snapshot spec amendment 2026-12-06): `used_fen` 0–9,000,000,000,000, so no
    /// sum a kiosk makes with it (S + L) can overflow.
    @Test func usedFenIsBounded() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.usage(used: "9000000000001")], [P.usage(used: "9223372036854775807")], [P.usage(used: "-1")], [P.usage(used: "100.5")],
        ], good: [P.usage(used: "9000000000000")])
    }

    /// S + L cannot trap: an overflowing sum counts as everything used (nothing left).
    @Test func usedFiguresNeverTrap() {
        let f = UsageFigures(snapshotFen: Fen.max - 5, localFen: 10, cardFen: 0)
        #expect(f.used == Fen.max)
        #expect(UsageFigures(snapshotFen: 9_000_000_000_000, localFen: 99_999_999, cardFen: 0).used == 9_000_099_999_999)
    }

    @Test func aPersonNamingAProgramTwiceIsRefused() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.person(programs: #""HM-SUBSIDY","HM-SUBSIDY""#)],
            [P.person(programs: #""HM-SUBSIDY","HM-CS-OUTPATIENT","LA-DIRECT","HM-SUBSIDY""#)],
            [P.person(programs: #""XX-UNDEFINED","XX-UNDEFINED""#)],
        ], good: [P.person(programs: #""HM-SUBSIDY","HM-CS-OUTPATIENT","LA-DIRECT""#)])
    }

    /// A person may name a program that the file does not define: it installs, and the
    /// program is left out of decisions.
    @Test func aPersonMayNameAProgramTheFileDoesNotDefine() throws {
        let P = SnapshotInstallTests.self
        let s = try installedStore()
        try s.installSnapshot(at: P.file([P.person(programs: #""XX-UNDEFINED","HM-SUBSIDY""#), P.card()]),
                              trustedAuthorities: Fixture.authorities, now: Fixture.now)
        let v = try #require(try s.view(cardNumber: "3307820000000090", period: "2026"))
        #expect(v.person?.programs == ["XX-UNDEFINED", "HM-SUBSIDY"])
        #expect(v.programs.map(\.code) == ["HM-SUBSIDY"])
    }

    @Test func usedFenIsANonNegativeInteger() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.usage(used: "-1")], [P.usage(used: "-100000")], [P.usage(used: "1.5")], [P.usage(used: "100.0")],
            [P.usage(used: "1e3")], [P.usage(used: #""100""#)], [P.usage(used: "true")], [P.usage(used: "null")],
        ], good: [P.usage(used: "0")])
        let s = try installedStore()
        try s.installSnapshot(at: P.file([P.usage(ref: P.ref17, used: "0")]), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(try s.view(cardNumber: "3307820000000017", period: "2026")?.usage["HM-SUBSIDY"]?.snapshotFen == 0)
    }

    @Test func aCardNumberIsSixteenDigits() throws {
        let P = SnapshotInstallTests.self
        try expectRule([
            [P.card(number: "330782000000009")], [P.card(number: "33078200000000900")], [P.card(number: "330782000000009X")],
            [P.card(number: " 330782000000009")], [P.card(number: "３３０７８２0000000090")],
        ], good: [P.card(number: "3307820000000090")])
    }

    @Test func aPersonRefIs32LowercaseHexDigitsInEveryRecord() throws {
        let P = SnapshotInstallTests.self
        let upper = P.ref17.uppercased(), short = String(P.ref17.dropLast()), long = P.ref17 + "0", notHex = "g" + P.ref17.dropFirst()
        try expectRule([
            [P.person(ref: upper)], [P.person(ref: short)], [P.person(ref: long)], [P.person(ref: notHex)],
            [P.card(ref: upper)], [P.card(ref: short)], [P.card(ref: notHex)],
            [P.usage(ref: upper)], [P.usage(ref: long)], [P.usage(ref: "ab0c8ad7629e95b976c51368c5dd25b377165922036e377038cdf1fe8ec10595")],   // a v1 id_hash
        ], good: [P.person(ref: P.ref17), P.card(ref: P.ref17), P.usage(ref: P.ref17)])
    }

    @Test func aStringFieldIsAtMost256Bytes() throws {
        let P = SnapshotInstallTests.self
        let ascii257 = String(repeating: "x", count: 257)
        let chinese86 = String(repeating: "停", count: 86)          // 86 characters, 258 bytes
        try expectRule([
            [P.person(reason: ascii257)], [P.person(reason: chinese86)],
            [P.program(name: ascii257)], [P.legalAid(matterName: chinese86)],    // a matter's name, inside a list
            [#"{"type":"device","device_id":"KSK-TEST-0009","public_key":"9E1jNbDMpJhD/biF6eDsN3fYo6jiQjDT/012z6KykJc=","institution":"\#(ascii257)","status":"active"}"#],
            [#"{"type":"card","card_number":"3307820000000090","person_ref":"\#(P.ref17)","status":"active","public_key":"\#(ascii257)"}"#],
        ], good: [P.person(reason: String(repeating: "停", count: 85) + "x"), P.program(name: String(repeating: "x", count: 256))])
    }

    /// A line is at most 64 KiB; the bound holds for every line, even of an unknown type.
    @Test func aLineIsAtMost64KiB() throws {
        func padded(_ bytes: Int) -> String {
            let head = #"{"type":"future_thing","pad":""#, tail = #""}"#
            return head + String(repeating: "p", count: bytes - head.utf8.count - tail.utf8.count) + tail
        }
        #expect(padded(65536).utf8.count == 65536)
        try expectRule([[padded(65537)], [padded(65536 * 3)], [padded(70000), SnapshotInstallTests.person()]],
                       good: [padded(65536)])
        // The refusal of a line in the middle names it.
        let s = try installedStore()
        do {
            _ = try s.installSnapshot(at: SnapshotInstallTests.file([SnapshotInstallTests.person(), padded(70000), SnapshotInstallTests.card()]),
                                      trustedAuthorities: Fixture.authorities, now: Fixture.now)
            Issue.record("installed a file with a 70,000-byte line")
        } catch let r as SnapshotRefusal {
            #expect(r.code == "bad_record" && r.description.contains("line \(SnapshotInstallTests.firstExtraLine + 1):"), "\(r)")
        }
        let good = try installedStore()
        let r = try good.installSnapshot(at: SnapshotInstallTests.file([padded(65536)]), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(r.ignoredRecords == 1)
    }

    /// The bound is checked while reading: a one-line 200 MB file is refused after reading
    /// about one chunk, never held whole.
    @Test func aHugeLineIsRefusedWithFlatMemory() throws {
        let dir = Fixture.tempDir()
        let huge = dir.appendingPathComponent("huge.jsonl")
        #expect(FileManager.default.createFile(atPath: huge.path, contents: Data(#"{"type":"header","pad":""#.utf8)))
        let w = try FileHandle(forWritingTo: huge)
        try w.truncate(atOffset: 200 << 20)                // 200 MB, one line (a sparse file: no newline anywhere)
        try w.close()

        var reader = LineReader(handle: try FileHandle(forReadingFrom: huge))
        do {
            while try reader.next() != nil {}
            Issue.record("read a 200 MB line")
        } catch let r as LineReader.TooLong {
            #expect(r == LineReader.TooLong(line: 1, maxLine: 65536))
        }
        #expect(reader.peakBuffered <= 2 << 20, "buffered \(reader.peakBuffered) bytes")
        #expect(reader.bytesRead <= 2 << 20, "read \(reader.bytesRead) bytes")

        let s = try store()
        #expect(throws: SnapshotRefusal.badRecord(line: 1, "the line is longer than 65536 bytes")) {
            try s.installSnapshot(at: huge, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        }
        #expect(try s.installedSnapshot() == nil)

        // A header, then the long line: refused naming line 2, the installed snapshot untouched.
        let installed = try installedStore()
        let before = try SnapshotInstallTests.contents(installed)
        let second = dir.appendingPathComponent("second.jsonl")
        let header = try JSONSerialization.data(withJSONObject: SnapshotInstallTests.nextHeader(), options: [.sortedKeys])
        #expect(FileManager.default.createFile(atPath: second.path, contents: header + Data("\n".utf8)))
        let h = try FileHandle(forWritingTo: second)
        try h.truncate(atOffset: 200 << 20)
        try h.close()
        #expect(throws: SnapshotRefusal.badRecord(line: 2, "the line is longer than 65536 bytes")) {
            try installed.installSnapshot(at: second, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        }
        #expect(try SnapshotInstallTests.contents(installed) == before)
    }

    /// Lines split across chunks are joined; the bound is the line's bytes without its `\n`.
    @Test func theLineReaderJoinsChunksAndBoundsLines() throws {
        let file = Fixture.tempDir().appendingPathComponent("lines.txt")
        try Data("abc\n0123456789\n\nxyz".utf8).write(to: file)
        var reader = LineReader(handle: try FileHandle(forReadingFrom: file), maxLine: 10, chunkSize: 3)
        var lines: [String] = []
        while let l = try reader.next() { lines.append(String(decoding: l, as: UTF8.self)) }
        #expect(lines == ["abc\n", "0123456789\n", "\n", "xyz"])
        #expect(reader.peakBuffered <= 10 + 1 + 3)

        try Data("abc\n0123456789\n01234567890\nx\n".utf8).write(to: file)
        var tooLong = LineReader(handle: try FileHandle(forReadingFrom: file), maxLine: 10, chunkSize: 3)
        #expect(try tooLong.next().map { Array($0) } == Array("abc\n".utf8))
        #expect(try tooLong.next().map { Array($0) } == Array("0123456789\n".utf8))
        #expect(throws: LineReader.TooLong(line: 3, maxLine: 10)) { try tooLong.next() }

        // The last line, without its `\n`, is bounded too.
        try Data("abc\n01234567890".utf8).write(to: file)
        var last = LineReader(handle: try FileHandle(forReadingFrom: file), maxLine: 10, chunkSize: 4)
        _ = try last.next()
        #expect(throws: LineReader.TooLong(line: 2, maxLine: 10)) { try last.next() }
    }

    // MARK: - snapshot spec §2 and sync spec §6

    /// A snapshot issued more than 10 minutes ahead of the kiosk's clock is refused
    /// (`issued_in_future`); one within 10 minutes installs and raises the clock floor.
    @Test func aSnapshotIssuedMoreThanTenMinutesAheadIsRefused() throws {
        let now = Fixture.now   // 2026-11-22T03:00:00Z
        let s = try installedStore()
        let before = try SnapshotInstallTests.contents(s)
        for issued in ["2026-11-22T03:11:00Z", "2026-11-22T03:10:01Z", "2027-11-22T03:00:00Z"] {
            let file = try Fixture.snapshot(header: SnapshotInstallTests.nextHeader(["issued_at": issued]))
            #expect(throws: SnapshotRefusal.issuedInFuture(issuedAt: issued, now: "2026-11-22T03:00:00Z")) {
                try s.installSnapshot(at: file, trustedAuthorities: Fixture.authorities, now: now)
            }
            #expect(try SnapshotInstallTests.contents(s) == before)
        }
        #expect(try s.clockFloor().floor == Timestamp.date("2026-11-22T02:00:00Z"))

        // On an empty store too.
        let empty = try store()
        #expect(throws: SnapshotRefusal.self) {
            try empty.installSnapshot(at: Fixture.snapshot(header: SnapshotInstallTests.nextHeader(["issued_at": "2026-11-22T03:11:00Z"])),
                                      trustedAuthorities: Fixture.authorities, now: now)
        }
        #expect(try empty.installedSnapshot() == nil && empty.clockFloor().floor == nil)

        // 9 minutes ahead installs; the floor learns its issued_at (ahead of the clock).
        let nine = try Fixture.snapshot(header: SnapshotInstallTests.nextHeader(["issued_at": "2026-11-22T03:09:00Z"]))
        let r = try s.installSnapshot(at: nine, trustedAuthorities: Fixture.authorities, now: now)
        #expect(r.header.issuedAt == "2026-11-22T03:09:00Z")
        #expect(try s.installedSnapshot()?.header.snapshotID == "330782-20261122-02")
        #expect(try s.clockFloor().floor == Timestamp.date("2026-11-22T03:09:00Z"))
        // Exactly 10 minutes ahead is not "more than 10 minutes".
        let ten = try Fixture.snapshot(header: SnapshotInstallTests.nextHeader(["issued_at": "2026-11-22T03:10:00Z", "snapshot_id": "330782-20261122-03"]))
        try s.installSnapshot(at: ten, trustedAuthorities: Fixture.authorities, now: now)
        #expect(try s.clockFloor().floor == Timestamp.date("2026-11-22T03:10:00Z"))
    }

    /// Installing never lowers the clock floor, and a refused install does not move it.
    @Test func theClockFloorOnlyRises() throws {
        let s = try installedStore()
        // Something later raised the floor (a record, a card write); an earlier issued_at leaves it there.
        try s.pool.write { db in try KioskStore.raiseClockFloor(db, to: #require(Timestamp.date("2026-11-22T02:45:00Z"))) }
        try s.installSnapshot(at: Fixture.snapshot(header: SnapshotInstallTests.nextHeader()), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(try s.clockFloor().floor == Timestamp.date("2026-11-22T02:45:00Z"))
    }
}

/// Issue 9: installing a large full must not stop the kiosk. Reads see the installed snapshot
/// throughout; writes (a card's commit, an alert) go through between the install's batches;
/// the new snapshot appears whole, at once.
@Suite struct InstallWhileServingTests {
    @Test func writesAndReadsGoOnDuringALargeFullInstall() async throws {
        let d = try Fixture.device()
        _ = try d.store.installSnapshot(at: Fixture.snapshot(), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        // A newer full: the vectors' records with card 0017 lost, and 60,000 more persons and cards.
        var header = Fixture.vectorHeader
        header["snapshot_id"] = "330782-20261122-02"
        header["issued_at"] = "2026-11-22T02:30:00Z"
        let url = Fixture.tempDir().appendingPathComponent("big.jsonl")
        var records = Fixture.vectorRecords
        for i in records.indices where records[i]["card_number"] as? String == "3307820000000017" { records[i]["status"] = "lost" }
        let (vectorRecords, headerText) = (records.map(SnapshotInstallTests.text), SnapshotInstallTests.text(header))
        // Written on a thread of its own (seconds of blocking work stay off the test pool).
        try await onOwnThread {
            let header = try JSONSerialization.jsonObject(with: Data(headerText.utf8)) as? [String: Any] ?? [:]
            let w = try SnapshotWriter(url: url, header: header, authorityKey: Fixture.authority)
            for r in vectorRecords { try w.addRaw(r) }
            var rng = SystemRandomNumberGenerator()
            for i in 0..<60_000 {
                let ref = SnapshotWriter.personRef(using: &rng)
                try w.add(["type": "person", "person_ref": ref, "status": "active", "status_reason": "", "programs": ["HM-SUBSIDY"]])
                try w.add(["type": "card", "card_number": String(format: "33078290%08d", i), "person_ref": ref, "status": "active"])
            }
            try w.finish()
        }

        let store = d.store
        let context = d.context
        struct Measured: Sendable {
            var report: Result<InstallReport, Error>?
            var writesDuring = 0, readsDuring = 0, writeErrors: [String] = []
            var sawNew = false, backToOld = false
        }
        // The install and the taps run on threads of their own, not on the test's (cooperative)
        // pool: tens of seconds of blocking work there would starve every other test.
        let measured: Measured = await withCheckedContinuation { c in
            Thread {
                let installing = Atomic<Bool>(true)
                let result = Mutex<Result<InstallReport, Error>?>(nil)
                let done = DispatchSemaphore(value: 0)
                Thread {
                    result.withLock { $0 = Result { try store.installSnapshot(at: url, trustedAuthorities: Fixture.authorities, now: Fixture.now) } }
                    installing.store(false, ordering: .releasing)
                    done.signal()
                }.start()
                var m = Measured()
                var i = 0
                while installing.load(ordering: .acquiring) {
                    i += 1
                    do {
                        _ = try store.recordAlert(device: context, code: "printer_fault", cardNumber: nil, detail: "during install \(i)", now: Fixture.now)
                        if installing.load(ordering: .acquiring) { m.writesDuring += 1 }
                    } catch { m.writeErrors.append("\(error)") }
                    if let view = try? store.view(cardNumber: "3307820000000017", period: "2026"), installing.load(ordering: .acquiring) {
                        m.readsDuring += 1
                        // The switch is atomic: once the new snapshot shows, the old one never shows again.
                        if view.card?.status == .lost { m.sawNew = true } else if m.sawNew { m.backToOld = true }
                    }
                }
                done.wait()
                m.report = result.withLock { $0 }
                c.resume(returning: m)
            }.start()
        }
        let report = try #require(try measured.report?.get())
        #expect(report.header.snapshotID == "330782-20261122-02" && report.records == Fixture.vectorRecords.count + 120_000)
        #expect(measured.writeErrors.isEmpty, "\(measured.writeErrors.prefix(3))")
        // The install took several batches; commits and reads went through between them.
        #expect(measured.writesDuring > 0 && measured.readsDuring > 0)
        #expect(!measured.backToOld)
        // After the switch, the new snapshot, whole.
        #expect(try store.view(cardNumber: "3307820000000017", period: "2026")?.card?.status == .lost)
        #expect(try store.view(cardNumber: "3307829000059999", period: "2026")?.card?.status == .active)
        #expect(try store.installedSnapshot()?.records == report.records)
    }

    @Test func aRefusedFullLeavesTheInstalledSnapshotAndTheNextFullCleansUp() async throws {
        let d = try Fixture.device()
        _ = try d.store.installSnapshot(at: Fixture.snapshot(), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        var header = Fixture.vectorHeader
        header["snapshot_id"] = "330782-20261122-02"
        header["issued_at"] = "2026-11-22T02:30:00Z"
        var records = Fixture.vectorRecords
        for i in 0..<25_000 {   // more than one batch
            records.append(["type": "card", "card_number": String(format: "33078291%08d", i), "person_ref": String(repeating: "a", count: 32), "status": "active"])
        }
        // Signed by an untrusted key: refused at the trailer, after all the batches.
        let bad = try Fixture.snapshot(header: header, records: records, key: Curve25519.Signing.PrivateKey())
        let store = d.store
        let refused: Error? = await { () async -> Error? in
            do { _ = try await onOwnThread { try store.installSnapshot(at: bad, trustedAuthorities: Fixture.authorities, now: Fixture.now) }; return nil } catch { return error }
        }()
        #expect(refused as? SnapshotRefusal == .badSignature)
        #expect(try d.store.installedSnapshot()?.header.snapshotID == "330782-20261122-01")
        // The staging file went with it (a refused file leaves nothing on the disk).
        let folder = URL(fileURLWithPath: d.store.path).deletingLastPathComponent().path
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".staging-") }.isEmpty)
        #expect(try d.store.view(cardNumber: "3307829100000001", period: "2026")?.card == nil)
        // The same file, signed properly: installed; what the refused one left is gone.
        let good = try Fixture.snapshot(header: header, records: Array(records.prefix(Fixture.vectorRecords.count)))
        _ = try d.store.installSnapshot(at: good, trustedAuthorities: Fixture.authorities, now: Fixture.now)
        #expect(try d.store.view(cardNumber: "3307829100000001", period: "2026")?.card == nil)
        #expect(try d.store.installedSnapshot()?.header.snapshotID == "330782-20261122-02")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".staging-") }.isEmpty)
    }
}

extension SnapshotInstallTests {
    /// Issue 11: a full install stages rows unsorted, then copies them in key ranges. Keys
    /// that repeat (the last line wins) must never be split across two ranges, and every
    /// staged row must land, whatever the range size.
    @Test("the staged copy in key ranges keeps every row, and the last line of a repeated key wins across range boundaries",
          arguments: [1, 2, 3, 7, 1000])
    func stagedCopyInKeyRanges(rowsPerRange: Int) throws {
        let d = try Fixture.device()
        let pool = d.store.pool
        let (target, token) = try pool.write { db in try SnapshotLoader.Generation.prepareInactive(db) }
        var batch = SnapshotLoader.GenerationBatch(target: target, token: token)
        batch.rowsPerRange = rowsPerRange
        // Cards in shuffled order, each key three times with rising status; the last is "lost".
        var rng = SplitMix64(seed: UInt64(rowsPerRange))
        var keys = (0..<40).map { String(format: "33078291%08d", $0) }
        keys.shuffle(using: &rng)
        let shuffled = keys
        let stagingPath = d.store.path + ".staging-test"
        let ranges = try SnapshotLoader.GenerationBatch.staged(at: stagingPath, &batch) { batch, flush in
            for round in ["active", "revoked", "lost"] {
                for k in shuffled { try batch.card(k, String(repeating: "b", count: 32), round) }
                try batch.usage(String(repeating: "c", count: 32), "HM-SUBSIDY", "2026", round.count)
                try flush(&batch)
            }
        }
        try pool.writeWithoutTransaction { db in try db.execute(sql: "ATTACH DATABASE ? AS staging", arguments: [stagingPath]) }
        for r in ranges { try pool.write { db in try batch.copy(db, r) } }
        try pool.writeWithoutTransaction { db in try db.execute(sql: "DETACH DATABASE staging") }
        let cards = try pool.read { db in try Row.fetchAll(db, sql: "SELECT card_number, status FROM card_\(target) ORDER BY card_number") }
        #expect(cards.count == 40 && cards.allSatisfy { $0["status"] as String == "lost" })
        let usage = try pool.read { db in try Int.fetchAll(db, sql: "SELECT used_fen FROM usage_\(target)") }
        #expect(usage == ["lost".count])
        // Ranges of one table cover it without overlap: each range starts where the previous ended.
        let cardRanges = ranges.filter { $0.table == 1 }
        for (a, b) in zip(cardRanges, cardRanges.dropFirst()) { #expect(a.through == b.after) }
        #expect(cardRanges.first?.after == nil && cardRanges.last?.through == nil)
        if rowsPerRange <= 3 { #expect(cardRanges.count >= 10, "small ranges should cut the 120 rows often: \(cardRanges.count)") }
        try FileManager.default.removeItem(atPath: stagingPath)
    }

    /// A record as one canonical JSON line (sorted keys), as `SnapshotWriter.add` writes it.
    static func text(_ o: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data(), as: UTF8.self)
    }
}
