import Crypto
import KioskProtocol
import Foundation
import TestVectors
import Testing
@testable import Publisher
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// Issue 21 item 1: only signed inputs become signatures. A hub operator with database access
/// (or the hub's own role, or the tables' owner) writes rows straight into the roster, the
/// records and the certificate requests; the publisher, checking against its own archive of
/// verified roster changes, refuses to sign and says why, and publishes again once the
/// database is put right. On SQLite, and on PostgreSQL with BK_TEST_POSTGRES.
@Suite struct SignedInputsTests {
    static let evilKey = Curve25519.Signing.PrivateKey()
    static let evilPerson = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

    /// A hub database with the vectors' roster applied through the archive, and a first full.
    static func published(_ label: String) throws -> (HubDatabase, RosterArchive, SnapshotPublisher, TestClock) {
        let db = try testHubDatabase(label)
        let archive = try PublishCase.archive(label)
        try PublishCase.apply(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster), db, archive)
        let clock = TestClock(vectorHubClock)
        let publisher = SnapshotPublisher(database: db, configuration: try PublishCase.publisher(db, now: vectorHubClock).configuration,
                                          archive: archive, now: { clock.now })
        #expect(try publisher.publish()?.snapshot.kind == "full")
        return (db, archive, publisher, clock)
    }

    static func snapshotCount(_ db: HubDatabase) throws -> Int64 {
        try db.engine.read { try $0.int("SELECT COUNT(*) FROM hub_snapshot") ?? 0 }
    }

    /// The next publication, a few seconds on (ids have whole seconds).
    static func next(_ publisher: SnapshotPublisher, _ clock: TestClock, full: Bool = false) throws -> Publication? {
        clock.now = clock.now.addingTimeInterval(5)
        return try publisher.publish(forceFull: full)
    }

    /// An archive in a fresh folder and a hub database, the vectors' roster and one person applied through it.
    static func twoChanges(_ label: String) throws -> (URL, RosterArchive, HubDatabase) {
        let folder = temporaryFolder(label).appendingPathComponent("archive", isDirectory: true)
        let archive = try RosterArchive(folder: folder, trustedKeys: PublishCase.rosterKeys)
        let db = try testHubDatabase(label)
        try PublishCase.apply(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster), db, archive)
        try PublishCase.apply(try PublishCase.change("RC-2", records: [RosterImportTests.person(1)]), db, archive)
        return (folder, archive, db)
    }

    /// What the attacker writes: a device with its own key, a person, and (with `records`)
    /// an accepted subsidy of 99,999,999 fen for that person, as a new roster change would leave them.
    static func inject(_ db: HubDatabase, records: Bool) throws {
        try db.engine.write { c in
            let seq = (try c.int("SELECT COALESCE(MAX(seq), 0) FROM roster_change") ?? 0) + 1
            try c.execute("INSERT INTO roster_change (seq, change_id, region, issued_at, sha256, records, urgent, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          seq, "RC-EVIL", "330782", "2026-11-22T02:00:00Z", String(repeating: "0", count: 64), 2, false, "2026-11-22T02:00:00Z")
            let device = #"{"device_id":"KSK-EVIL","institution":"330782-H01","public_key":"\#(evilKey.publicKey.rawRepresentation.base64EncodedString())","status":"active","type":"device"}"#
            let person = #"{"person_ref":"\#(evilPerson)","programs":["HM-SUBSIDY"],"status":"active","status_reason":"","type":"person"}"#
            try c.execute("INSERT INTO roster_entry (region, type, key, line, seq) VALUES (?, ?, ?, ?, ?)", "330782", "device", "KSK-EVIL", device, seq)
            try c.execute("INSERT INTO roster_entry (region, type, key, line, seq) VALUES (?, ?, ?, ?, ?)", "330782", "person", evilPerson, person, seq)
            if records {
                try c.execute("INSERT INTO hub_answer (record_id, device_id, seq, sha256, status, answered_at, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              "KSK-EVIL-1", "KSK-EVIL", 1, "x", "accepted", "2026-11-22T02:00:00Z", "evil")
                try c.execute("""
                    INSERT INTO hub_record (record_id, device_id, seq, kind, body, sha256, received_at, batch_id, person_ref, program, period, subsidy_fen)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, "KSK-EVIL-1", "KSK-EVIL", 1, "medical_subsidy", "{}", "x", "2026-11-22T02:00:00Z", "evil", evilPerson, "HM-SUBSIDY", "2026", 99_999_999)
            }
        }
    }

    @Test("attacker with the database: an injected device, person and a subsidy of 99,999,999 fen make the publisher refuse (delta and full), sign nothing, and say so; put right, it publishes again")
    func injectedRowsAreNeverSigned() throws {
        let (db, _, publisher, clock) = try Self.published("signed-inject")
        let before = try Self.snapshotCount(db)
        try Self.inject(db, records: true)
        for full in [false, true] {
            #expect(throws: RosterArchiveError.self, full ? "full" : "delta") { try Self.next(publisher, clock, full: full) }
        }
        #expect(try Self.snapshotCount(db) == before)
        // Nothing on the shelf names the attacker's key or person (no staging file left either).
        for case let file as String in FileManager.default.enumerator(atPath: db.shelf.path) ?? FileManager.default.enumerator(atPath: "/nonexistent")! {
            var directory: ObjCBool = false
            let path = db.shelf.appendingPathComponent(file).path
            guard FileManager.default.fileExists(atPath: path, isDirectory: &directory), !directory.boolValue else { continue }
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(!text.contains(Self.evilPerson) && !text.contains("KSK-EVIL"), "\(file)")
        }
        // The rows taken out again (an operator restoring the database): publication resumes.
        try db.engine.write { c in
            try c.execute("DELETE FROM roster_entry WHERE key IN (?, ?)", "KSK-EVIL", Self.evilPerson)
        }
        let resumed = try Self.next(publisher, clock, full: true)
        #expect(resumed?.snapshot.kind == "full")
        let text = try String(contentsOfFile: try #require(resumed).snapshot.file, encoding: .utf8)
        #expect(!text.contains(Self.evilPerson) && !text.contains("KSK-EVIL"))
    }

    @Test("attacker with the database: a 停保 person turned active in place (its old change number kept), or deleted, is caught at the next full; a delta never signs it")
    func editedRowsAreNeverSigned() throws {
        let (db, _, publisher, clock) = try Self.published("signed-edit")
        let suspended = "1c7f4a5d0e3b4c2a9f8e7d6c5b4a3921"
        let line = try #require(try db.rosterLines(region: "330782").first { $0.type == "person" && $0.line.contains("suspended") })
        try db.engine.write { c in
            try c.execute("UPDATE roster_entry SET line = ? WHERE region = ? AND type = 'person' AND key = ?",
                          line.line.replacingOccurrences(of: "\"suspended\"", with: "\"active\""), "330782", line.key)
        }
        _ = suspended
        // A delta reads only what moved; the edit is not in it, and nothing else moved.
        #expect(try Self.next(publisher, clock) == nil)
        #expect(throws: RosterArchiveError.self) { try Self.next(publisher, clock, full: true) }
        try db.engine.write { c in try c.execute("UPDATE roster_entry SET line = ? WHERE region = ? AND type = 'person' AND key = ?", line.line, "330782", line.key) }
        #expect(try Self.next(publisher, clock, full: true) != nil)
        // A deleted card (the database says the card is gone: kiosks would drop its status).
        let card = try #require(try db.rosterLines(region: "330782").first { $0.type == "card" })
        try db.engine.write { c in try c.execute("DELETE FROM roster_entry WHERE region = ? AND type = 'card' AND key = ?", "330782", card.key) }
        #expect(throws: RosterArchiveError.self) { try Self.next(publisher, clock, full: true) }
        // …or with a tombstone, so a delta would carry the delete.
        try db.engine.write { c in
            let seq = (try c.int("SELECT COALESCE(MAX(seq), 0) FROM roster_change") ?? 0) + 1
            try c.execute("INSERT INTO roster_change (seq, change_id, region, issued_at, sha256, records, urgent, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          seq, "RC-EVIL-DEL", "330782", "2026-11-22T02:00:00Z", String(repeating: "0", count: 64), 1, false, "2026-11-22T02:00:00Z")
            try c.execute("INSERT INTO roster_tombstone (region, type, key, seq) VALUES (?, ?, ?, ?)", "330782", "card", card.key, seq)
        }
        #expect(throws: RosterArchiveError.self) { try Self.next(publisher, clock) }
    }

    @Test("attacker with the database: a certificate request for an injected device, or for a genuine device under another key, is never answered; the registered key is")
    func certificatesOnlyForVerifiedKeys() throws {
        let (db, archive, _, _) = try Self.published("signed-cert")
        try Self.inject(db, records: false)
        let issuer = CertificateIssuer(database: db, caKeyID: Vectors.deviceCA.id, caKey: Vectors.deviceCA.private, now: { vectorHubClock })
        try db.requestCertificate(deviceID: "KSK-EVIL", publicKey: Array(Self.evilKey.publicKey.rawRepresentation), now: vectorHubClock)
        // The genuine device re-keyed in the database to the attacker's key.
        try db.engine.write { c in
            let line = try #require(try c.text("SELECT line FROM roster_entry WHERE type = 'device' AND key = ?", Fixtures.deviceID))
            let genuine = try Fixtures.publicKey(Fixtures.deviceID)
            try c.execute("UPDATE roster_entry SET line = ? WHERE type = 'device' AND key = ?",
                          line.replacingOccurrences(of: genuine, with: Self.evilKey.publicKey.rawRepresentation.base64EncodedString()), Fixtures.deviceID)
        }
        try db.requestCertificate(deviceID: Fixtures.deviceID, publicKey: Array(Self.evilKey.publicKey.rawRepresentation), now: vectorHubClock)
        #expect(try issuer.issuePending(archive: archive).isEmpty)
        #expect(try db.issuedCertificate(deviceID: "KSK-EVIL") == nil && db.issuedCertificate(deviceID: Fixtures.deviceID) == nil)
        // Without the archive (as before issue 21) the database was believed: the attack works.
        var believed = Roster()
        _ = try db.loadRoster(into: &believed)
        #expect(Set(try issuer.issuePending(roster: believed)) == ["KSK-EVIL", Fixtures.deviceID])
        // The device's own registered key is answered.
        let genuine = try #require(Data(base64Encoded: try Fixtures.publicKey(Fixtures.deviceID)))
        try db.requestCertificate(deviceID: Fixtures.deviceID, publicKey: Array(genuine), now: vectorHubClock)
        #expect(try issuer.issuePending(archive: archive) == [Fixtures.deviceID])
    }

    @Test("two publishers, each with its own archive: the one that applied a change shares it on the shelf; the other takes it from there (verified) and publishes, never without it")
    func secondPublisherFollows() throws {
        let db = try testHubDatabase("two-publishers")
        let a = try PublishCase.archive("publisher-a"), b = try PublishCase.archive("publisher-b")
        try PublishCase.apply(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster), db, a)
        try PublishCase.apply(try PublishCase.change("RC-2", records: [RosterImportTests.person(1, "suspended")]), db, a)
        let clock = TestClock(vectorHubClock)
        let configuration = try PublishCase.publisher(db, now: vectorHubClock).configuration
        let publisherB = SnapshotPublisher(database: db, configuration: configuration, archive: b, now: { clock.now })
        // Before it takes the shelf's copies, B refuses: the database holds what B never verified.
        #expect(throws: RosterArchiveError.self) { try publisherB.publish() }
        // A copy on the shelf that is not what was signed is refused, and B stays where it was.
        let shared = db.shelf.appendingPathComponent("roster-changes/RC-2.jsonl")
        let genuine = try Data(contentsOf: shared)
        try Data(String(decoding: genuine, as: UTF8.self).replacingOccurrences(of: "suspended", with: "active").utf8).write(to: shared)
        #expect(throws: RosterChange.Refusal.self) { try b.reconcile(db, now: testEpoch) }
        #expect(try b.changeCount() == 1)
        try genuine.write(to: shared)
        try b.reconcile(db, now: testEpoch)
        #expect(try b.changeCount() == 2)
        clock.now = clock.now.addingTimeInterval(5)
        #expect(try publisherB.publish()?.snapshot.kind == "full")
    }

    @Test("the archive survives a commit that never came (the link written, its row not) and a torn last line: the next change is numbered after the chain's last link")
    func chainNumbering() throws {
        let (folder, archive, db) = try Self.twoChanges("archive-numbering")
        // As if RC-2's transaction had failed after its link was written.
        try archive.store.write { try $0.execute(sql: "DELETE FROM applied WHERE change_id = 'RC-2'") }
        // And a crash cut an append short.
        let chain = folder.appendingPathComponent("chain")
        let handle = try FileHandle(forWritingTo: chain)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("3 RC-9 330782 00".utf8))
        try handle.close()
        try PublishCase.apply(try PublishCase.change("RC-3", records: [RosterImportTests.person(2)]), db, archive)
        let reopened = try RosterArchive(folder: folder, trustedKeys: PublishCase.rosterKeys)
        #expect(try reopened.verifyFiles() == 3 && reopened.changeCount() == 3)
        #expect(try String(contentsOf: chain, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ")[1] } == ["RC-1", "RC-2", "RC-3"])
    }

    @Test("the archive is the publisher's own: a folder others may write is refused; a chain edited or a file swapped is found; a change archived but not applied is recovered; a database missing changes gets them")
    func archiveIntegrity() throws {
        let (folder, archive, db) = try Self.twoChanges("archive-own")
        #expect(try archive.verifyFiles() == 2)
        // Group-writable: refused.
        chmod(folder.path, 0o770)
        #expect(throws: RosterArchiveError.self) { try RosterArchive(folder: folder, trustedKeys: PublishCase.rosterKeys) }
        chmod(folder.path, 0o700)
        // A chain line changed (another change id, or another digest): refused at opening.
        let chain = folder.appendingPathComponent("chain")
        let original = try String(contentsOf: chain, encoding: .utf8)
        try original.replacingOccurrences(of: "RC-2", with: "RC-9").write(to: chain, atomically: true, encoding: .utf8)
        #expect(throws: RosterArchiveError.self) { try RosterArchive(folder: folder, trustedKeys: PublishCase.rosterKeys) }
        try original.write(to: chain, atomically: true, encoding: .utf8)
        // A file swapped for another signed change: found by verify-archive.
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("changes").path).sorted()
        try Data(try PublishCase.change("RC-2", records: [RosterImportTests.person(1, "suspended")]))
            .write(to: folder.appendingPathComponent("changes").appendingPathComponent(files[1]))
        #expect(throws: RosterArchiveError.self) { try RosterArchive(folder: folder, trustedKeys: PublishCase.rosterKeys).verifyFiles() }

        // Killed between the archive and verified.sqlite: the link without its entries is applied at the next opening.
        let second = temporaryFolder("archive-recover").appendingPathComponent("archive", isDirectory: true)
        let a2 = try RosterArchive(folder: second, trustedKeys: PublishCase.rosterKeys)
        let db2 = try testHubDatabase("archive-recover")
        try PublishCase.apply(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster), db2, a2)
        try a2.store.write { db in
            try db.execute(sql: "DELETE FROM applied")
            try db.execute(sql: "DELETE FROM entry")
        }
        let reopened = try RosterArchive(folder: second, trustedKeys: PublishCase.rosterKeys)
        #expect(try reopened.changeCount() == 1)
        #expect(try reopened.read { try $0.count(region: "330782") } == (try PublishCase.vectorRoster).count)
        // A hub database that lacks the archive's changes (restored from an older backup) gets them.
        let empty = try testHubDatabase("archive-reconcile")
        try reopened.reconcile(empty, now: testEpoch)
        #expect(try empty.rosterLines(region: "330782").count == (try PublishCase.vectorRoster).count)
    }
}
