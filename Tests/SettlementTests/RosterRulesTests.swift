import AsyncHTTPClient
import Crypto
import KioskProtocol
import KioskCore
import Foundation
import TestVectors
import Testing
@testable import Settlement
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// Issue 21 item 4: a roster change is whole or refused (the roster loader's rules before
/// anything is stored; a stored line that still fails is skipped, never stalls the roster),
/// roster keys are bound to regions, and devices to theirs. On SQLite, and on PostgreSQL with
/// BK_TEST_POSTGRES.
@Suite struct RosterRulesTests {
    static let otherKey = try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(repeating: 0x53, count: 32))
    /// Two offices: 330782's key and 330783's.
    static var twoRegions: RosterKeys {
        var keys = PublishCase.rosterKeys
        keys["330783-roster-test"] = RosterKey(publicKey: otherKey.publicKey, regions: ["330783"])
        return keys
    }

    static func device(_ id: String, status: String = "active", key: String? = nil) -> [String: Any] {
        ["type": "device", "device_id": id, "public_key": key ?? Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString(),
         "institution": "330782-H01", "status": status]
    }

    @Test("an entry the roster loader would refuse refuses the whole change (a bad device key, a medical program without a limit, a card key of 31 bytes); nothing is stored")
    func loaderRulesBeforeStoring() throws {
        let db = try testHubDatabase("roster-rules")
        let shortKey = Data(repeating: 7, count: 31).base64EncodedString()
        let bad: [[String: Any]] = [
            ["type": "device", "device_id": "KSK-BAD-1", "public_key": "notbase64", "status": "active"],
            ["type": "device", "device_id": "KSK-BAD-2", "status": "active"],
            ["type": "program", "code": "HM-X", "card_type": "medical", "matters": []],
            ["type": "program", "code": "HM-Y"],
            ["type": "card", "card_number": "3307820000000098", "person_ref": PublishCase.ref17, "public_key": shortKey, "status": "active"],
        ]
        for (i, entry) in bad.enumerated() {
            // The bad entry after good ones: nothing of the change is kept.
            let bytes = try PublishCase.change("RC-BAD-\(i)", records: [RosterImportTests.person(1), Self.device("KSK-GOOD-\(i)"), entry])
            #expect(throws: RosterChange.Refusal.self, "entry \(i)") { try RosterChange.read(bytes, trustedKeys: PublishCase.rosterKeys) }
            #expect(throws: RosterChange.Refusal.self, "entry \(i), streamed") {
                try db.importRosterChange(RosterChange.lines(of: try RosterImportTests.file(bytes)), trustedKeys: PublishCase.rosterKeys, now: testEpoch)
            }
        }
        #expect(try db.rosterMark() == 0 && db.rosterLines(region: "330782").isEmpty)
    }

    @Test("a stored line the loader refuses (written into the database by someone else) is skipped and alerted: later changes still take effect, and after a restart the devices registered by changes still upload")
    func badStoredLineNeverStalls() throws {
        let db = try testHubDatabase("roster-skip")
        var base = Roster()
        try base.load(snapshot: Fixtures.url("snapshot-small.jsonl").path)
        try db.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-1", records: [Self.device("KSK-NEW-1"), Self.device("KSK-NEW-2")]),
                                                       trustedKeys: PublishCase.rosterKeys), now: testEpoch)
        let hub = SettlementHub(database: db, roster: base, logger: quietLogger)
        #expect(hub.device("KSK-NEW-1")?.status == "active" && hub.device("KSK-NEW-1")?.region == "330782")
        // A poisoned line, as an old hub stored it or a database writer put it there.
        try db.engine.write { c in
            try c.execute("INSERT INTO roster_entry (region, type, key, line, seq) VALUES (?, ?, ?, ?, ?)", "330782", "device", "KSK-POISON",
                          #"{"device_id":"KSK-POISON","public_key":"notbase64","type":"device"}"#, 2)
        }
        // A later change retires KSK-NEW-1: the hub follows it.
        try db.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-2", records: [Self.device("KSK-NEW-1", status: "retired")]),
                                                       trustedKeys: PublishCase.rosterKeys), now: testEpoch)
        hub.refreshRoster(force: true)
        #expect(hub.device("KSK-NEW-1")?.status == "retired")
        // A restart reads the whole stored roster: the poisoned line is skipped, the rest is there.
        let restarted = SettlementHub(database: db, roster: base, logger: quietLogger)
        #expect(restarted.device("KSK-NEW-1")?.status == "retired" && restarted.device("KSK-NEW-2")?.status == "active")
        #expect(restarted.device("KSK-POISON") == nil)
        var rebuilt = Roster()
        let skipped = try db.loadRoster(into: &rebuilt)
        #expect(skipped.count == 1 && skipped[0].contains("KSK-POISON"))
    }

    @Test("a roster key is bound to its regions: named without one it is refused; a change for another region does not verify")
    func keysBoundToRegions() throws {
        let b64 = PublishCase.rosterKey.publicKey.rawRepresentation.base64EncodedString()
        #expect(throws: RosterChange.Refusal.self) { try RosterChange.keys(options: ["330782-roster-test=\(b64)"]) }
        #expect(throws: RosterChange.Refusal.self) { try RosterChange.keys(options: ["330782-roster-test=\(b64),"]) }
        #expect(throws: RosterChange.Refusal.self) { try RosterChange.keys(options: ["330782-roster-test=\(b64),33/0782"]) }
        let keys = try RosterChange.keys(options: ["330782-roster-test=\(b64),330782,330783"])
        #expect(keys["330782-roster-test"]?.regions == ["330782", "330783"])
        // 330782's key signing a change for 330784: refused, whatever the signature.
        let foreign = try PublishCase.change("RC-F", records: [RosterImportTests.person(1)], region: "330784")
        #expect(throws: RosterChange.Refusal.wrongRegion(key: "330782-roster-test", region: "330784")) {
            try RosterChange.read(foreign, trustedKeys: PublishCase.rosterKeys)
        }
        let db = try testHubDatabase("roster-region-keys")
        #expect(throws: RosterChange.Refusal.wrongRegion(key: "330782-roster-test", region: "330784")) {
            try db.importRosterChange(RosterChange.lines(of: try RosterImportTests.file(foreign)), trustedKeys: PublishCase.rosterKeys, now: testEpoch)
        }
    }

    @Test("one region's key cannot touch another region's devices, persons or cards: the change is refused whole")
    func regionsKeepTheirEntries() throws {
        let db = try testHubDatabase("roster-regions")
        let device = Self.device("KSK-R-1")
        try db.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-A", records: [device, RosterImportTests.person(5)]),
                                                       trustedKeys: Self.twoRegions), now: testEpoch)
        let mark = try db.rosterMark()
        // 330783's office, with its own genuine key, re-registers 330782's device under another key,
        // deletes it, or suspends 330782's person.
        let attacks: [[String: Any]] = [Self.device("KSK-R-1"), ["type": "device", "device_id": "KSK-R-1", "op": "delete"],
                                        RosterImportTests.person(5, "suspended")]
        for (i, attack) in attacks.enumerated() {
            let bytes = try PublishCase.change("RC-B\(i)", records: [RosterImportTests.person(900 + i), attack], key: Self.otherKey,
                                               keyID: "330783-roster-test", region: "330783")
            #expect(throws: RosterChange.Refusal.self, "attack \(i)") { try db.applyRosterChange(try RosterChange.read(bytes, trustedKeys: Self.twoRegions), now: testEpoch) }
            #expect(throws: RosterChange.Refusal.self, "attack \(i), streamed") {
                try db.importRosterChange(RosterChange.lines(of: try RosterImportTests.file(bytes)), trustedKeys: Self.twoRegions, now: testEpoch)
            }
        }
        #expect(try db.rosterMark() == mark && db.rosterLines(region: "330783").isEmpty)
        let stored = try db.rosterLines(region: "330782").first { $0.key == "KSK-R-1" }
        #expect(stored?.line.contains(device["public_key"] as! String) == true)
        // 330783's own entries go in.
        try db.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-B-OK", records: [Self.device("KSK-R-2")], key: Self.otherKey,
                                                                              keyID: "330783-roster-test", region: "330783"),
                                                       trustedKeys: Self.twoRegions), now: testEpoch)
        #expect(try db.rosterLines(region: "330783").map(\.key) == ["KSK-R-2"])
    }

    @Test("a device is given its own region's snapshots only: another region's, or any for a device registered without a region, is 403 wrong_region")
    func wrongRegion() async throws {
        try await withHub { hub in
            try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            let home = try SyncCase.kiosk(hub.url)
            #expect(await (try SyncCase.sync(home)).round().failure == nil)
            // The same device asking for region 330783 (a kiosk provisioned for it, or an attacker with its key).
            var config = home.config
            config.region = "330783"
            let away = try Device.provision(stateDir: temporaryFolder("kiosk-away"), config: config, seed: Fixtures.seed(Fixtures.deviceID), replaceKey: false)
            let refused = await (try SyncCase.sync(away)).round().failure
            guard case .refused(403, let message, _)? = refused else { Issue.record("\(String(describing: refused))"); return }
            #expect(message.contains("wrong_region") || message.contains("330783"))
            let file = await (try SyncCase.sync(away)).signedRequest("/v1/regions/330783/snapshots/330782-20261122-01", range: nil)
            #expect(try await HTTPClient.shared.execute(file, timeout: .seconds(10)).status.code == 403)
            // Registered on the command line (no region): uploads, but fetches no region's snapshots.
            var roster = Roster()
            try roster.add(deviceID: Fixtures.deviceID, publicKey: try Fixtures.publicKey(Fixtures.deviceID), institution: "330782-H01")
            hub.hub.roster = roster
            guard case .refused(403, _, _)? = await (try SyncCase.sync(home)).round().failure else { Issue.record("a device without a region synced"); return }
        }
    }
}
