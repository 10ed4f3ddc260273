import Crypto
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import Publisher
import TestVectors
import Testing
@testable import Settlement
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// The platform loop (sync spec §5): signed roster changes in, S from stored records,
/// signed snapshots out, synced by kiosks.
enum PublishCase {
    static let rosterKey = try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(repeating: 0x52, count: 32))
    static var rosterKeys: RosterKeys { ["330782-roster-test": RosterKey(publicKey: rosterKey.publicKey, regions: ["330782"])] }
    static let newCard = "3307820000000099"
    static let ref17 = "997bb21c2fd71da3a74ad22ada8a3d3e"

    /// A roster change file signed by `key`.
    static func change(_ id: String, records: [[String: Any]], key: Curve25519.Signing.PrivateKey = rosterKey,
                       keyID: String = "330782-roster-test", region: String = "330782") throws -> [UInt8] {
        let url = temporaryFolder("roster").appendingPathComponent("\(id).jsonl")
        let w = try SnapshotWriter(url: url, header: ["format": "roster-change", "format_version": 1, "region": region, "change_id": id,
                                                      "issued_at": "2026-11-22T02:00:00Z", "roster_key_id": keyID], authorityKey: key)
        for r in records { try w.add(r) }
        try w.finish()
        return Array(try Data(contentsOf: url))
    }

    /// The vectors' programs, devices, persons and cards, as the civil-affairs office would send them.
    static var vectorRoster: [[String: Any]] {
        get throws {
            try String(decoding: Vectors.data("snapshot-small.jsonl"), as: UTF8.self).split(separator: "\n").compactMap {
                let o = try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
                return ["program", "device", "person", "card"].contains(o["type"] as? String ?? "") ? o : nil
            }
        }
    }

    /// The publisher's own archive in a fresh folder, trusting the test roster key.
    static func archive(_ label: String = "archive", keys: RosterKeys = rosterKeys) throws -> RosterArchive {
        try RosterArchive(folder: temporaryFolder(label).appendingPathComponent("archive", isDirectory: true), trustedKeys: keys)
    }

    /// A signed change applied as the publisher applies it: through its archive, then to `db`.
    @discardableResult
    static func apply(_ bytes: [UInt8], _ db: HubDatabase, _ archive: RosterArchive, now: Date = testEpoch) throws -> RosterChange.Verified {
        let url = temporaryFolder("change").appendingPathComponent("change.jsonl")
        try Data(bytes).write(to: url)
        return try archive.apply(file: url, to: db, now: now).0
    }

    /// `--roster-key` for the test key, as the executables take it.
    static var rosterKeyOption: String { "330782-roster-test=" + rosterKey.publicKey.rawRepresentation.base64EncodedString() + ",330782" }

    static func publisher(_ db: HubDatabase, now: Date, inMemoryEntries: Int? = nil, archive: RosterArchive? = nil) throws -> SnapshotPublisher {
        let a = try #require(Vectors.keys["authority"] as? [String: String])
        let seedText = try #require(a["private_seed"])
        let seed = try #require(Data(base64Encoded: seedText))
        var configuration = PublisherConfiguration(region: "330782", authorityKeyID: "330782-auth-test", authorityKey: try .init(rawRepresentation: seed))
        if let inMemoryEntries { configuration.inMemoryEntries = inMemoryEntries }
        return SnapshotPublisher(database: db, configuration: configuration, archive: archive, now: { now })
    }
}

@Suite struct RosterChangeTests {
    @Test("a signed change applies once; a bad signature, an unknown key, usage or a replay is refused")
    func importRules() throws {
        let db = try testHubDatabase("hub")
        let good = try PublishCase.change("RC-1", records: try PublishCase.vectorRoster)
        let change = try RosterChange.read(good, trustedKeys: PublishCase.rosterKeys)
        // The vectors hold a suspended person (…0033, 停保): a change kiosks must act on at once.
        #expect(change.entries.count == (try PublishCase.vectorRoster).count && change.urgent)
        let programOnly = try PublishCase.change("RC-0", records: [try #require(try PublishCase.vectorRoster.first { $0["type"] as? String == "program" })])
        #expect(try !RosterChange.read(programOnly, trustedKeys: PublishCase.rosterKeys).urgent)
        #expect(try db.applyRosterChange(change, now: testEpoch) == change.entries.count)
        #expect(throws: RosterChange.Refusal.alreadyApplied("RC-1")) { try db.applyRosterChange(change, now: testEpoch) }

        var tampered = good
        let i = try #require(tampered.firstIndex(of: UInt8(ascii: "H")))
        tampered[i] = UInt8(ascii: "J")
        #expect(throws: RosterChange.Refusal.digestMismatch) { try RosterChange.read(tampered, trustedKeys: PublishCase.rosterKeys) }
        let forged = try PublishCase.change("RC-2", records: [], key: Curve25519.Signing.PrivateKey())
        #expect(throws: RosterChange.Refusal.badSignature) { try RosterChange.read(forged, trustedKeys: PublishCase.rosterKeys) }
        let unknown = try PublishCase.change("RC-3", records: [], keyID: "someone-else")
        #expect(throws: RosterChange.Refusal.untrustedKey("someone-else")) { try RosterChange.read(unknown, trustedKeys: PublishCase.rosterKeys) }
        let usage = try PublishCase.change("RC-4", records: [["type": "usage", "person_ref": PublishCase.ref17, "program": "HM-SUBSIDY",
                                                             "period": "2026", "used_fen": 0]])
        #expect(throws: RosterChange.Refusal.self) { try RosterChange.read(usage, trustedKeys: PublishCase.rosterKeys) }

        let lost = try PublishCase.change("RC-5", records: [["type": "card", "card_number": "3307820000000017", "person_ref": PublishCase.ref17,
                                                            "status": "lost"]])
        #expect(try RosterChange.read(lost, trustedKeys: PublishCase.rosterKeys).urgent)
    }

    @Test("the authority key file must be the publisher's alone")
    func keyFileMode() throws {
        let file = temporaryFolder("key").appendingPathComponent("authority.key").path
        try Data(repeating: 7, count: 32).base64EncodedString().write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o644)
        #expect(throws: PublisherError.self) { try PublisherConfiguration.readKey(file: file) }
        chmod(file, 0o600)
        #expect(try PublisherConfiguration.readKey(file: file).rawRepresentation == Data(repeating: 7, count: 32))
    }
}

@Suite struct PublisherTests {
    /// Issue 9's loop: kiosk A's subsidy reaches the hub; the platform replaces the card; the
    /// publisher's delta carries the replacement and S; kiosk B, shown the new card (which
    /// carries no usage), counts what A already granted.
    @Test("kiosk A grants and uploads; the card is replaced; kiosk B sees S on the new card")
    func replacementCardCarriesS() async throws {
        try await withHub(now: vectorHubClock) { hub in
            let db = hub.hub.database
            try db.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster),
                                                           trustedKeys: PublishCase.rosterKeys), now: vectorHubClock)
            let publisher = try PublishCase.publisher(db, now: vectorHubClock.addingTimeInterval(1))
            let first = try #require(try publisher.publish())
            #expect(first.snapshot.kind == "full" && first.overLimit.isEmpty)
            // The next looks are other publishers' (one at a time: this one hands the lock over).
            publisher.releasePublicationLock()
            // Nothing changed: nothing published.
            #expect(try PublishCase.publisher(db, now: vectorHubClock.addingTimeInterval(2)).publish() == nil)

            // Kiosk A's subsidy (the vectors' record: 100.00 yuan for card 0017) reaches the hub.
            let answers = try await hub.send([try HubCase.subsidy(seq: 1)])
            #expect(answers.first?.status == "accepted")
            // The office replaces the card: 0017 replaced, 0099 issued to the same person.
            let change = try RosterChange.read(try PublishCase.change("RC-2", records: [
                ["type": "card", "card_number": "3307820000000017", "person_ref": PublishCase.ref17, "status": "replaced"],
                ["type": "card", "card_number": PublishCase.newCard, "person_ref": PublishCase.ref17, "status": "active"],
            ]), trustedKeys: PublishCase.rosterKeys)
            #expect(change.urgent)
            try db.applyRosterChange(change, now: vectorHubClock.addingTimeInterval(3))
            let later = try PublishCase.publisher(db, now: vectorHubClock.addingTimeInterval(4))
            #expect(try later.urgentPending())
            let second = try #require(try later.publish())
            #expect(second.snapshot.kind == "delta" && second.snapshot.baseSnapshotID == first.snapshot.snapshotID)
            #expect(second.records == 3)   // two cards and one usage entry: only what changed
            #expect(try !later.urgentPending())
            let text = try String(contentsOfFile: second.snapshot.file, encoding: .utf8)
            #expect(text.contains(#""used_fen":10000"#) && !text.contains(#""type":"program""#))

            // Kiosk B, fresh, syncs the full and the delta.
            let kioskB = try SyncCase.kiosk(hub.url)
            let round = await (try SyncCase.sync(kioskB, now: vectorHubClock.addingTimeInterval(30))).round()
            #expect(round.failure == nil && round.installed.map(\.header.snapshotID) == [first.snapshot.snapshotID, second.snapshot.snapshotID])
            let view = try #require(try kioskB.store.view(cardNumber: PublishCase.newCard, period: "2026"))
            #expect(view.card?.status == .active && view.usage["HM-SUBSIDY"]?.snapshotFen == 10000)
            #expect(try kioskB.store.view(cardNumber: "3307820000000017", period: "2026")?.card?.status == .replaced)
        }
    }

    @Test("S over a program's limit is raised to the operators once; a reversal lowers S")
    func overLimitAndReversal() async throws {
        try await withHub(now: vectorHubClock) { hub in
            let db = hub.hub.database
            try db.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster),
                                                           trustedKeys: PublishCase.rosterKeys), now: vectorHubClock)
            // A lower limit than the kiosks knew: 50.00 yuan.
            var program = try #require(try PublishCase.vectorRoster.first { $0["code"] as? String == "HM-SUBSIDY" })
            program["limit_fen"] = 5000
            try db.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-2", records: [program]), trustedKeys: PublishCase.rosterKeys),
                                     now: vectorHubClock)
            _ = try await hub.send([try HubCase.subsidy(seq: 1)])
            let p = try #require(try PublishCase.publisher(db, now: vectorHubClock.addingTimeInterval(1)).publish())
            #expect(p.overLimit == [OverLimit(personRef: PublishCase.ref17, program: "HM-SUBSIDY", period: "2026", usedFen: 10000, limitFen: 5000)])
            // The reversal of that subsidy: S back to 0, in a delta.
            let reversal: [String: Any] = ["record_id": "KSK-TEST-0001-2", "seq": 2, "kind": "subsidy_reversal", "created_at": "2026-11-22T03:05:00Z",
                                           "snapshot_id": NSNull(), "reverses": "KSK-TEST-0001-1", "amount_fen": 10000, "reason": "wrong bill",
                                           "operator": "OP-1"]
            #expect(try await hub.send([reversal]).first?.status == "accepted")
            let q = try #require(try PublishCase.publisher(db, now: vectorHubClock.addingTimeInterval(2)).publish())
            #expect(q.snapshot.kind == "delta" && q.overLimit.isEmpty)
            #expect(try String(contentsOfFile: q.snapshot.file, encoding: .utf8).contains(#""used_fen":0"#))
        }
    }
}

@Suite struct PlatformEndpointTests {
    @Test("a roster change posted to the hub goes to the inbox (202) when signed by a key trusted for its region, and only then; the publisher applies it and the hub sees the new device")
    func rosterChangeEndpoint() async throws {
        try await withHub(now: vectorHubClock, rosterKeys: PublishCase.rosterKeys) { hub in
            let url = "\(hub.url)/v1/regions/330782/roster-changes"
            let newDevice = RosterRulesTests.device("KSK-INBOX-1")
            let good = try PublishCase.change("RC-1", records: try PublishCase.vectorRoster + [newDevice])
            let (s1, o1, t1) = try await post(url, good, signature: nil)
            #expect(s1 == 202 && o1?["queued"] as? String == "RC-1", "\(t1)")
            // Queued once: the same change again before the publisher took it is 409.
            #expect(try await post(url, good, signature: nil).0 == 409)
            // Queued, not applied: the hub process never writes the roster.
            #expect(try hub.hub.database.rosterLines(region: "330782").isEmpty && hub.hub.database.rosterInbox().count == 1)
            let forged = try PublishCase.change("RC-2", records: [], key: Curve25519.Signing.PrivateKey())
            #expect(try await post(url, forged, signature: nil).0 == 400)
            #expect(try await post("\(hub.url)/v1/regions/330783/roster-changes", try PublishCase.change("RC-3", records: []), signature: nil).0 == 400)
            // Signed by 330782's key for 330783: a key is trusted for its regions only.
            #expect(try await post("\(hub.url)/v1/regions/330783/roster-changes", try PublishCase.change("RC-4", records: [], region: "330783"),
                                   signature: nil).0 == 400)
            #expect(try hub.hub.database.rosterInbox().count == 1)

            // The publisher empties the inbox: verified again, archived, applied.
            let archive = try PublishCase.archive("inbox")
            let outcomes = try archive.pullInbox(hub.hub.database, now: vectorHubClock)
            #expect(outcomes.map(\.changeID) == ["RC-1"] && outcomes[0].refusal == nil)
            #expect(try hub.hub.database.rosterInbox().isEmpty && archive.changeCount() == 1)
            #expect(try hub.hub.database.rosterLines(region: "330782").count == (try PublishCase.vectorRoster).count + 1)
            hub.hub.refreshRoster(force: true)
            #expect(hub.hub.device("KSK-INBOX-1")?.status == "active")
            #expect(try await post(url, good, signature: nil).0 == 409)   // a replay of an applied change
        }
    }

    @Test("a kiosk asks for its certificate through the hub, the publisher issues it, the kiosk installs it; a retired device gets 403")
    func certificateRenewal() async throws {
        try await withHub(now: vectorHubClock) { hub in
            let device = try SyncCase.kiosk(hub.url)
            #expect(device.certificate == nil)
            let environment = UploaderEnvironment(now: { vectorHubClock.addingTimeInterval(30) }, sleep: { try await Task.sleep(for: $0) },
                                                  random: { 0.5 }, makeBatchID: { "b" })
            let renewal = CertificateRenewal(configuration: try SyncConfiguration(hubURL: hub.url), device: device.context,
                                             signingKey: device.signingKey, environment: environment)
            let install: @Sendable ([UInt8]) throws -> (notAfter: Date, description: String) = { bytes in
                let cert = try device.installCertificate(bytes, now: vectorHubClock)
                return (cert.notAfter, "\(cert.validFrom)–\(cert.validThrough)")
            }
            #expect(await renewal.round(notAfter: nil, install: install) == .requested)
            #expect(try hub.hub.database.pendingCertificateRequests().map(\.deviceID) == [Fixtures.deviceID])

            // The publisher, with the device-CA key, answers for the device's registered key.
            var roster = hub.hub.roster
            let issuer = CertificateIssuer(database: hub.hub.database, caKeyID: Vectors.deviceCA.id, caKey: Vectors.deviceCA.private,
                                           now: { vectorHubClock })
            #expect(try issuer.issuePending(roster: roster) == [Fixtures.deviceID])
            guard case .installed = await renewal.round(notAfter: nil, install: install) else { Issue.record("not installed"); return }
            let cert = try #require(device.certificate)
            #expect(cert.validFrom.compact == "20261122" && cert.validThrough.compact == "20270219")   // 90 days, both counted
            // Plenty left: nothing asked.
            #expect(await renewal.round(notAfter: cert.notAfter, install: install) == .notDue)

            // A certificate for another key (the device re-keyed at the platform): refused, the old one stays.
            try roster.add(deviceID: Fixtures.deviceID, publicKey: Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString(),
                           institution: "330782-H01")
            try hub.hub.database.requestCertificate(deviceID: Fixtures.deviceID,
                                                    publicKey: Array(try #require(roster[Fixtures.deviceID]).publicKey.rawRepresentation), now: vectorHubClock)
            #expect(try issuer.issuePending(roster: roster) == [Fixtures.deviceID])
            guard case .refused = await renewal.round(notAfter: nil, force: true, install: install) else { Issue.record("a foreign certificate was taken"); return }
            #expect(device.certificate == cert)

            // Retired in the roster: 403 to both.
            try roster.add(deviceID: Fixtures.deviceID, publicKey: device.publicKeyBase64, institution: "330782-H01", status: "retired")
            hub.hub.roster = roster
            guard case .failed(.refused(403, _, _)) = await renewal.round(notAfter: nil, install: install) else { Issue.record("a retired device was served"); return }
        }
    }
}
