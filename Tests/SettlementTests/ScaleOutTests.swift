import KioskProtocol
import Crypto
import Foundation
import KioskCore
import KioskStore
import TestVectors
import Testing
@testable import Publisher
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// Issue 12: several hub processes against one store. Each test runs on the engine of the
/// run (SQLite, or PostgreSQL when `BK_TEST_POSTGRES` is set: the test command runs both).
/// "Another process" is another `HubDatabase` with connections of its own, or a real
/// `settlement-hub` / `hub-publisher` process.
@Suite("Several hub processes against one store (issue 12)")
struct ScaleOutTests {
    @Test("two hubs receive the same batch at the same moment: each record stored once, answered once accepted and once duplicate with one received_at")
    func sameBatchAtOnce() async throws {
        let store = try testHubStore("scale-out")
        let a = try await HubFixture.start(database: try store.open())
        let b = try await HubFixture.start(database: try store.open())
        do {
            var all: [String] = []
            for round in 0..<8 {
                let records = try (1...12).map { try HubCase.subsidy(seq: round * 12 + $0) }
                all += records.compactMap { $0["record_id"] as? String }
                let texts = try records.map { try HubCase.text($0) }
                async let x = a.sendTexts(texts)
                async let y = b.sendTexts(texts)
                let (fromA, fromB) = try await (x, y)
                for (ra, rb) in zip(fromA, fromB) {
                    #expect(Set([ra.status, rb.status]) == ["accepted", "duplicate"], "round \(round): \(ra) / \(rb)")
                    #expect(ra.receivedAt == rb.receivedAt && ra.receivedAt != nil, "one first answer: \(ra) / \(rb)")
                }
            }
            let db = try store.open()
            #expect(try db.recordCount() == all.count)
            #expect(try db.answerCount() == all.count)
            #expect(try db.records().map(\.recordID).sorted() == all.sorted())
        } catch {
            await a.stop(); await b.stop()
            throw error
        }
        await a.stop(); await b.stop()
    }

    @Test("a long poll on one hub process wakes when another process publishes (PostgreSQL: LISTEN/NOTIFY; its slow poll set to a minute)")
    func longPollWakesAcrossProcesses() async throws {
        let store = try testHubStore("scale-out")
        // On PostgreSQL the poll runs once a minute: only the notification can answer within the deadline.
        let hub = try await HubFixture.start(database: try store.open(), publicationPoll: testPostgresURL == nil ? nil : .seconds(60))
        do {
            let (_, sync) = try await SyncCase.syncedKiosk(hub)
            let publisher = try store.open()   // another process's connections
            let d2 = try SyncCase.lostCardDelta()
            let round = try await withDeadline(seconds: 20, "long poll across processes") {
                async let polled = sync.round(wait: 300)
                try await Task.sleep(for: .seconds(1))
                try publisher.publishSnapshot(file: d2, now: testEpoch)
                return await polled
            }
            #expect(round.failure == nil && round.installed.map(\.header.snapshotID) == ["330782-20261122-02"])
        } catch {
            await hub.stop()
            throw error
        }
        await hub.stop()
    }

    @Test("publication runs in one process at a time; another takes over when the holder's connection ends")
    func onePublisherAtATime() throws {
        let store = try testHubStore("scale-out")
        let first = try store.open()
        try first.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster),
                                                          trustedKeys: PublishCase.rosterKeys), now: testEpoch)
        let second = try store.open()
        let p1 = try PublishCase.publisher(first, now: testEpoch.addingTimeInterval(10))
        let p2 = try PublishCase.publisher(second, now: testEpoch.addingTimeInterval(20))
        #expect(try p1.publish()?.snapshot.kind == "full")
        #expect(throws: PublicationLockHeld.self) { try p2.publish() }
        // Still held: the holder publishes again (nothing changed: nothing published).
        #expect(try p1.publish() == nil)
        // The holder's process goes: its lock goes with it.
        first.close()
        try second.applyRosterChange(try RosterChange.read(try PublishCase.change("RC-2", records: [
            ["type": "card", "card_number": "3307820000000017", "person_ref": PublishCase.ref17, "status": "lost"],
        ]), trustedKeys: PublishCase.rosterKeys), now: testEpoch.addingTimeInterval(15))
        // PostgreSQL ends the closed session in its own time (seconds on a loaded machine): the
        // standby asks again, as `hub-publisher run` does at each interval.
        var taken: Publication??
        let deadline = Date().addingTimeInterval(20)
        while taken == nil {
            do { taken = .some(try p2.publish()) } catch is PublicationLockHeld where Date() < deadline { usleep(200_000) }
        }
        let takeover = try #require(taken.flatMap { $0 })
        #expect(takeover.snapshot.kind == "delta" && takeover.records == 1)
    }

    @Test("a publication planned on a snapshot that is no longer the latest (two publishers at once) is refused whole")
    func racedPublicationIsRefused() throws {
        let store = try testHubStore("scale-out")
        let a = try store.open(), b = try store.open()
        try a.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
        let d2 = try SyncCase.lostCardDelta()
        // Publisher B planned before A's full existed.
        #expect(throws: PublishError.raced(expected: nil, latest: SyncCase.full)) {
            try b.publishSnapshot(file: d2, now: testEpoch, plannedOn: .some(nil)) { _ in Issue.record("its state was written") }
        }
        #expect(try b.manifest(region: "330782", installed: nil)?.latest == SyncCase.full)
        #expect(try FileManager.default.contentsOfDirectory(atPath: b.shelf.path).filter { !$0.hasPrefix(".") } == ["\(SyncCase.full).jsonl"])
        // Planned on the latest: published.
        #expect(try b.publishSnapshot(file: d2, now: testEpoch, plannedOn: .some(SyncCase.full)).kind == "delta")
    }

    @Test("a local process on the hub's own connection cannot edit or delete a stored record or answer (either engine; fails without the refusal triggers)")
    func storedRecordsCannotBeEditedOrDeleted() async throws {
        let store = try testHubStore("scale-out")
        try await ScaleOutTests.acceptOneSubsidy(try store.open())
        // Another connection, as a process on the hub's machine would have.
        let db = try store.open()
        let id = "\(Fixtures.deviceID)-1"
        let before = try #require(try db.record(id))
        for sql in ["UPDATE hub_record SET subsidy_fen = 1 WHERE record_id = ?", "DELETE FROM hub_record WHERE record_id = ?",
                    "UPDATE hub_answer SET status = 'rejected', reason = 'x' WHERE record_id = ?", "DELETE FROM hub_answer WHERE record_id = ?"] {
            #expect(throws: (any Error).self, "\(sql) was let through") { try db.engine.write { try $0.execute(sql, id) } }
        }
        #expect(try db.record(id) == before)
        #expect(try db.answer(id)?.status == .accepted)
        #expect(try db.recordCount() == 1 && db.answerCount() == 1)
    }

    /// The vectors' subsidy sent to a hub on `db`, and accepted.
    static func acceptOneSubsidy(_ db: HubDatabase) async throws {
        let hub = try await HubFixture.start(database: db)
        do {
            let answers = try await hub.send([try HubCase.subsidy(seq: 1)])
            #expect(answers.first?.status == "accepted")
        } catch {
            await hub.stop()
            throw error
        }
        await hub.stop()
    }

    /// Starts `settlement-hub serve` on a free port and returns it with its port.
    /// `faulty`: the test-support `hub-fault-server` (the knobs in `extra`) instead.
    static func startHub(_ store: TestHubStore, _ extra: [String], in dir: URL, faulty: Bool = false) async throws -> (KillTests.Child, UInt16) {
        let program = faulty ? "hub-fault-server" : "settlement-hub"
        let head = faulty ? ["--port", "0"] : ["serve", "--port", "0", "--log-level", "error"]
        let child = try KillTests.Child.spawn(try KillTests.product(program), head + ["--snapshot", Fixtures.url("snapshot-small.jsonl").path]
                                              + store.arguments + extra, in: dir)
        var port: UInt16?
        let listening = await eventually(timeout: .seconds(60)) {
            guard let line = child.output.split(separator: "\n").first(where: { $0.contains("listening on") }),
                  let text = line.split(separator: ":").last?.split(separator: " ").first else { return false }
            port = UInt16(text)
            return port != nil
        }
        if !listening { kill(child.pid, SIGKILL); _ = await child.wait() }
        try #require(listening, "settlement-hub did not start: \(child.errors)")
        return (child, port!)
    }

    @Test("a hub process killed mid-batch (stored, answer lost): the kiosk goes on through the other process; every record once")
    func hubProcessKilledMidBatch() async throws {
        let dir = temporaryFolder("scale-kill")
        let store = try testHubStore("scale-kill")
        let db = try store.open()
        // Process A stores each batch, then sits on the answer: it is killed while the kiosk waits.
        // (A test-support hub: settlement-hub has no fault knobs since issue 22.)
        let (a, portA) = try await Self.startHub(store, ["--delay-ms", "30000", "--max-records", "25"], in: dir, faulty: true)
        let (b, portB) = try await Self.startHub(store, ["--max-records", "25"], in: dir)
        let balancer = try CuttingProxy(to: portA, cutAfter: Int.max, cuts: 0)
        defer { balancer.close(); kill(a.pid, SIGKILL); kill(b.pid, SIGKILL) }
        let stateDir = dir.appendingPathComponent("state")
        let device = try provisionDevice(hubURL: "http://127.0.0.1:\(balancer.port)", stateDir: stateDir)
        let records = try queueAlerts(device, 60)
        let kioskctl = try KillTests.kioskctl()

        let first = try KillTests.Child.spawn(kioskctl, ["upload", "--once", "--state-dir", stateDir.path], in: dir)
        let inFlight = await eventually(timeout: .seconds(60)) { ((try? db.recordCount()) ?? 0) > 0 }
        try #require(inFlight, "the first batch never reached hub A: \(first.errors) / hub A: \(a.errors.suffix(1500)) / forwarded \(balancer.forwarded.withLock { $0 })")
        #expect(kill(a.pid, SIGKILL) == 0)
        #expect(await a.wait() == 128 + SIGKILL)
        let storedBeforeKill = try db.recordCount()
        #expect(storedBeforeKill > 0 && storedBeforeKill < 60)
        _ = await first.wait()
        #expect(try device.store.queuedCount() == 60, "nothing was marked: the answer never came")

        // The balancer sends the kiosk to the other process.
        balancer.retarget(portB)
        let second = try KillTests.Child.spawn(kioskctl, ["upload", "--state-dir", stateDir.path], in: dir)
        let status = await second.wait()
        #expect(status == 0, "\(second.output)\n\(second.errors)")
        #expect(second.output.contains("60 accepted (\(storedBeforeKill) already at the hub)"), "\(second.output)")
        #expect(try device.store.queuedCount() == 0)
        let held = try db.records(deviceID: Fixtures.deviceID)
        #expect(held.count == 60 && Set(held.map(\.recordID)).count == 60)
        #expect(held.map(\.body) == records.map(\.body))
        #expect(try db.answerCount() == 60)
    }

    @Test("a publisher process killed mid-publication, three times: the shelf holds only whole files, and the next publication leaves kiosks exactly the state")
    func publisherKilledMidPublication() async throws {
        let dir = temporaryFolder("publish-kill")
        let store = try testHubStore("publish-kill")
        let db = try store.open()
        // A roster big enough that a publication takes a while.
        let persons = 4_000
        var roster = try PublishCase.vectorRoster
        for n in 0..<persons {
            roster.append(["type": "person", "person_ref": IncrementalPublisherTests.ref(n), "status": "active", "status_reason": "", "programs": ["HM-SUBSIDY"]])
            roster.append(["type": "card", "card_number": IncrementalPublisherTests.card(n), "person_ref": IncrementalPublisherTests.ref(n),
                           "status": "active", "public_key": "XOWI9ptiWfLv7v4sj/CD67RvlLLW8wXZef2TkbaaHy4="])
        }
        let archiveFolder = dir.appendingPathComponent("archive")
        let archive = try RosterArchive(folder: archiveFolder, trustedKeys: PublishCase.rosterKeys)
        try PublishCase.apply(try PublishCase.change("RC-0", records: roster), db, archive, now: Date())
        let keyFile = dir.appendingPathComponent("authority.key")
        let seed = try #require(Vectors.keys["authority"] as? [String: String])["private_seed"]
        FileManager.default.createFile(atPath: keyFile.path, contents: Data((seed ?? "").utf8), attributes: [.posixPermissions: 0o600])
        let publisher = try KillTests.product("hub-publisher")
        let arguments = ["publish", "--region", "330782", "--authority-key-file", keyFile.path, "--authority-key-id", "330782-auth-test",
                         "--archive", archiveFolder.path, "--roster-key", PublishCase.rosterKeyOption] + store.arguments

        for (round, delay) in [0.25, 0.7, 1.4].enumerated() {
            if round > 0 {
                // Work for the next publication: a thousand persons suspended or back.
                let status = round % 2 == 1 ? "suspended" : "active"
                try PublishCase.apply(try PublishCase.change("RC-\(round)", records: (0..<1_000).map {
                    ["type": "person", "person_ref": IncrementalPublisherTests.ref($0), "status": status, "status_reason": "", "programs": ["HM-SUBSIDY"]]
                }), db, archive, now: Date())
            }
            let child = try KillTests.Child.spawn(publisher, arguments, in: dir)
            try await Task.sleep(for: .seconds(delay))
            kill(child.pid, SIGKILL)
            _ = await child.wait()
            // Whatever was published is whole: every row names a file of its size and hash.
            for row in try db.engine.read({ try $0.rows("SELECT * FROM hub_snapshot ORDER BY seq") }).map(PublishedSnapshot.init) {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: row.file))
                #expect(Int64(bytes.count) == row.bytes && Hex.encode(SHA256.hash(data: bytes)) == row.sha256, "\(row.snapshotID) is not whole")
            }
            try await Task.sleep(for: .seconds(1.1))   // snapshot ids have whole seconds
        }
        // The next publication, by another publisher, runs to its end.
        let next = try PublishCase.publisher(try store.open(), now: Date().addingTimeInterval(2), archive: archive)
        _ = try next.publish()
        // A kiosk that follows the chain from the latest full holds exactly the state.
        let published = try db.engine.read { try $0.rows("SELECT * FROM hub_snapshot ORDER BY seq") }.map(PublishedSnapshot.init)
        let fromFull = try #require(published.lastIndex { $0.kind == "full" }, "nothing was ever published")
        var view = IncrementalPublisherTests.KioskView()
        for s in published[fromFull...] { try view.apply(s) }
        let cut = try #require(try db.engine.read { try $0.text("SELECT cut FROM publisher_mark WHERE region = '330782'") })
        let expected = try next.currentState(cut: cut).lines.mapValues(\.line)
        let differing = Set(view.entries.keys).union(expected.keys).filter { view.entries[$0] != expected[$0] }.sorted()
        #expect(differing.isEmpty, "the chain and the state differ at \(differing.prefix(5)) (\(differing.count) entries)")
        #expect(view.entries.count == expected.count && expected.count > 2 * persons)
    }
}

/// The province's roles (`settlement-hub migrate --grant-to --grant-publisher`): the tables
/// belong to an owner role; the hubs and the publisher log in as roles that own nothing, each
/// with only what its processes need (issue 21 item 1). PostgreSQL only.
@Suite struct ProvinceRoleTests {
    @Test("attacker with the hubs' or the publisher's PostgreSQL role: the hub and the publisher work, but the hub role cannot write the roster, the shelf or the publisher's tables, the publisher role cannot write a record, and neither can truncate, alter, drop or disable the refusal triggers",
          .enabled(if: testPostgresURL != nil))
    func rolesOwnNothing() async throws {
        let base = try PostgresLocation(url: try #require(testPostgresURL))
        let suffix = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
        let owner = "bk_owner_\(suffix)", hubRole = "bk_hub_\(suffix)", pubRole = "bk_pub_\(suffix)", schema = "t_roles_\(suffix)"
        let admin = try PostgresEngine(location: base)
        defer {
            _ = try? admin.write { c in
                for sql in ["DROP SCHEMA IF EXISTS \(schema) CASCADE", "DROP OWNED BY \(hubRole)", "DROP OWNED BY \(pubRole)",
                            "DROP ROLE IF EXISTS \(hubRole)", "DROP ROLE IF EXISTS \(pubRole)", "DROP ROLE IF EXISTS \(owner)"] {
                    try c.execute(sql, arguments: [])
                }
            }
            admin.close()
        }
        try admin.write { c in
            for sql in ["CREATE ROLE \(owner) LOGIN", "CREATE ROLE \(hubRole) LOGIN", "CREATE ROLE \(pubRole) LOGIN", "CREATE SCHEMA \(schema) AUTHORIZATION \(owner)"] {
                try c.execute(sql, arguments: [])
            }
        }
        let shelf = temporaryFolder("roles").appendingPathComponent("shelf", isDirectory: true)
        var asHub = base, asPublisher = base
        asHub.user = hubRole; asHub.searchPath = schema
        asPublisher.user = pubRole; asPublisher.searchPath = schema
        // As the set-up does it: `settlement-hub migrate --grant-to --grant-publisher`, as the owner.
        let baseURL = try #require(testPostgresURL)
        var ownerURL = try #require(URLComponents(string: baseURL))
        ownerURL.user = owner
        ownerURL.queryItems = (ownerURL.queryItems ?? []).filter { $0.name != "search_path" } + [URLQueryItem(name: "search_path", value: schema)]
        let ownerText = try #require(ownerURL.string)
        let migrate = try KillTests.Child.spawn(try KillTests.product("settlement-hub"),
                                                ["migrate", "--postgres", ownerText, "--shelf", shelf.path, "--grant-to", hubRole, "--grant-publisher", pubRole],
                                                in: temporaryFolder("roles"))
        #expect(await migrate.wait() == 0, "\(migrate.errors)")
        #expect(migrate.output.contains("\(hubRole): may read and insert records and answers"), "\(migrate.output)")

        // The publisher applies the roster (through its archive) and publishes under its role; the hub takes a batch under its own.
        let publisherDB = try HubDatabase(postgres: asPublisher, shelf: shelf)
        defer { publisherDB.close() }
        let archive = try PublishCase.archive("roles")
        try PublishCase.apply(try PublishCase.change("RC-1", records: try PublishCase.vectorRoster), publisherDB, archive)
        let db = try HubDatabase(postgres: asHub, shelf: shelf)
        defer { db.close() }
        try await ScaleOutTests.acceptOneSubsidy(db)
        #expect(try PublishCase.publisher(publisherDB, now: testEpoch.addingTimeInterval(60), archive: archive).publish() != nil)
        // The hub queues a roster change; the publisher empties the inbox.
        let change = temporaryFolder("roles").appendingPathComponent("rc2.jsonl")
        try Data(try PublishCase.change("RC-2", records: [RosterImportTests.person(1)])).write(to: change)
        try db.queueRosterChange(file: change, region: "330782", changeID: "RC-2", now: testEpoch)
        #expect(try archive.pullInbox(publisherDB, now: testEpoch).map(\.refusal) == [nil])

        // What the hub role must not do, though a process holding its connection tries.
        let id = "\(Fixtures.deviceID)-1"
        let before = try #require(try db.record(id))
        let rosterBefore = try db.rosterLines(region: "330782").map { "\($0.type)|\($0.key)|\($0.line)" }
        for sql in ["TRUNCATE hub_record", "TRUNCATE hub_answer", "ALTER TABLE hub_record DISABLE TRIGGER hub_record_never_edited",
                    "ALTER TABLE hub_answer DISABLE TRIGGER ALL", "DROP TABLE hub_answer", "UPDATE hub_record SET subsidy_fen = 1",
                    "DELETE FROM hub_answer", "CREATE TABLE hub_shadow (a BIGINT)", "INSERT INTO hub_migration (name) VALUES ('v99')",
                    "DROP TRIGGER hub_record_never_edited ON hub_record",
                    "INSERT INTO roster_entry (region, type, key, line, seq) VALUES ('330782', 'device', 'KSK-EVIL', '{}', 99)",
                    "UPDATE roster_entry SET line = '{}'", "DELETE FROM roster_entry", "DELETE FROM roster_tombstone",
                    "INSERT INTO roster_change (change_id, region, issued_at, sha256, records, urgent, applied_at) VALUES ('E', '330782', '', '', 0, 0, '')",
                    "UPDATE published_entry SET line = '{}'", "DELETE FROM hub_snapshot", "UPDATE publisher_mark SET roster_seq = 0",
                    "DELETE FROM roster_inbox"] {
            #expect(throws: (any Error).self, "hub role: \(sql) was let through") { try db.engine.write { try $0.execute(sql, arguments: []) } }
        }
        // What the publisher role must not do.
        for sql in ["TRUNCATE hub_record", "UPDATE hub_record SET subsidy_fen = 1", "DELETE FROM hub_record", "DELETE FROM hub_answer",
                    "INSERT INTO hub_answer (record_id, device_id, seq, sha256, status, answered_at, batch_id) VALUES ('X-1', 'X', 1, 'x', 'accepted', '', '')",
                    "ALTER TABLE hub_record DISABLE TRIGGER ALL", "DROP TRIGGER hub_record_never_edited ON hub_record",
                    "ALTER TABLE roster_entry ADD COLUMN shadow BIGINT", "CREATE TABLE hub_shadow (a BIGINT)"] {
            #expect(throws: (any Error).self, "publisher role: \(sql) was let through") { try publisherDB.engine.write { try $0.execute(sql, arguments: []) } }
        }
        #expect(try db.record(id) == before && db.answer(id)?.status == .accepted)
        #expect(try db.recordCount() == 1 && db.answerCount() == 1)
        #expect(try db.rosterLines(region: "330782").map { "\($0.type)|\($0.key)|\($0.line)" } == rosterBefore)
    }
}
