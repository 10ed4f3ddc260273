import AsyncHTTPClient
import Crypto
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import NIOCore
@testable import Settlement
import TestVectors
import Testing
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// Snapshot sync (sync spec §2–4) between the real hub on loopback and the kiosk's client.
enum SyncCase {
    static let region = "330782"
    static let full = "330782-20261122-01"

    static var authorityKey: Curve25519.Signing.PrivateKey {
        get throws {
            let a = try #require(Vectors.keys["authority"] as? [String: String])
            let seedText = try #require(a["private_seed"])
            let seed = try #require(Data(base64Encoded: seedText))
            return try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        }
    }

    static var vectorHeader: [String: Any] {
        get throws {
            let first = try #require(String(decoding: Vectors.data("snapshot-small.jsonl"), as: UTF8.self).split(separator: "\n").first)
            return try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        }
    }

    /// A signed delta on `base` with `records`.
    static func delta(_ id: String, base: String, issuedAt: String, records: [[String: Any]]) throws -> URL {
        var header = try vectorHeader
        header["snapshot_id"] = id
        header["kind"] = "delta"
        header["base_snapshot_id"] = base
        header["issued_at"] = issuedAt
        let url = temporaryFolder("delta").appendingPathComponent("\(id).jsonl")
        let w = try SnapshotWriter(url: url, header: header, authorityKey: try authorityKey)
        for r in records { try w.add(r) }
        try w.finish()
        return url
    }

    static func lostCard(_ number: String = "3307820000000017") -> [String: Any] {
        ["type": "card", "card_number": number, "person_ref": "997bb21c2fd71da3a74ad22ada8a3d3e", "status": "lost",
         "public_key": "XOWI9ptiWfLv7v4sj/CD67RvlLLW8wXZef2TkbaaHy4="]
    }

    /// A kiosk that trusts the test authority and syncs region 330782 from `hubURL`.
    static func kiosk(_ hubURL: String) throws -> Device {
        let config = DeviceConfig(deviceID: Fixtures.deviceID, institution: "330782-H01", profile: .hospital, issuerKeys: TestDevices.issuerKeys,
                                  authorityKeys: TestDevices.authorityKeys, deviceCAKeys: TestDevices.caKeys, hubURL: hubURL, printer: "file:/dev/null",
                                  provisionedAt: "2026-11-22T00:00:00Z", region: region)
        return try Device.provision(stateDir: temporaryFolder("kiosk"), config: config, seed: Fixtures.seed(Fixtures.deviceID), replaceKey: false)
    }

    static func sync(_ device: Device, now: Date = testEpoch.addingTimeInterval(30)) throws -> SnapshotSync {
        let environment = UploaderEnvironment(now: { now }, sleep: { try await Task.sleep(for: $0) }, random: { 0.5 }, makeBatchID: { "b" })
        return SnapshotSync(store: device.store, device: device.context, signingKey: device.signingKey,
                            trustedAuthorities: device.trustedAuthorities, directory: device.stateDir.appendingPathComponent("sync"),
                            configuration: try SyncConfiguration(hubURL: device.config.hubURL, region: device.config.region),
                            environment: environment, logger: quietLogger)
    }

    /// The vectors' full published, a kiosk, and its first round done (it holds the full).
    static func syncedKiosk(_ hub: HubFixture, sourceLocation: SourceLocation = #_sourceLocation) async throws -> (Device, SnapshotSync) {
        try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
        let device = try kiosk(hub.url)
        let sync = try sync(device)
        #expect(await sync.round().failure == nil, sourceLocation: sourceLocation)
        return (device, sync)
    }

    /// The delta on the vectors' full that reports card 0017 lost.
    static func lostCardDelta() throws -> URL {
        try delta("330782-20261122-02", base: full, issuedAt: "2026-11-22T02:30:00Z", records: [lostCard()])
    }

    static func alerts(_ device: Device, _ code: String) throws -> [SettlementRecord.Alert] {
        try device.store.records().compactMap { try $0.record().alert }.filter { $0.code == code }
    }
}

@Suite struct SyncTests {
    @Test("a full, then a delta: each round installs what is new and says so; then nothing is new")
    func fullThenDelta() async throws {
        try await withHub { hub in
            try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            let device = try SyncCase.kiosk(hub.url)
            let sync = try SyncCase.sync(device)

            let first = await sync.round()
            #expect(first.failure == nil && first.installed.map(\.header.snapshotID) == [SyncCase.full] && first.latest == SyncCase.full)

            let d2 = try SyncCase.lostCardDelta()
            try hub.hub.database.publishSnapshot(file: d2, now: testEpoch)
            let second = await sync.round()
            #expect(second.failure == nil && second.installed.map(\.header.snapshotID) == ["330782-20261122-02"])
            #expect(try device.store.view(cardNumber: "3307820000000017", period: "2026")?.card?.status == .lost)

            let third = await sync.round()
            #expect(third.failure == nil && third.installed.isEmpty && third.latest == nil)
            let status = await sync.status
            #expect(status.lastSuccessAt != nil && status.consecutiveFailures == 0)
            // Nothing partial is left in the state folder.
            let left = (try? FileManager.default.contentsOfDirectory(atPath: device.stateDir.appendingPathComponent("sync").path)) ?? []
            #expect(left.isEmpty)
        }
    }

    @Test("a kiosk with nothing installed gets the full and the deltas after it, in order")
    func freshKioskGetsTheChainFromTheFull() async throws {
        try await withHub { hub in
            try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            for (i, id) in ["330782-20261122-02", "330782-20261122-03"].enumerated() {
                let base = i == 0 ? SyncCase.full : "330782-20261122-02"
                try hub.hub.database.publishSnapshot(file: try SyncCase.delta(id, base: base, issuedAt: "2026-11-22T02:3\(i):00Z",
                                                                              records: i == 0 ? [SyncCase.lostCard()] : []), now: testEpoch)
            }
            let manifest = try #require(try hub.hub.database.manifest(region: SyncCase.region, installed: nil))
            #expect(manifest.steps.map(\.snapshotID) == [SyncCase.full, "330782-20261122-02", "330782-20261122-03"])
            // Unknown installed id: the same chain from the full.
            #expect(try hub.hub.database.manifest(region: SyncCase.region, installed: "330782-20200101-01")?.steps.count == 3)
            // From the middle: the one delta.
            #expect(try hub.hub.database.manifest(region: SyncCase.region, installed: "330782-20261122-02")?.steps.map(\.snapshotID) == ["330782-20261122-03"])

            let device = try SyncCase.kiosk(hub.url)
            let round = await (try SyncCase.sync(device)).round()
            #expect(round.failure == nil && round.installed.map(\.header.snapshotID) == manifest.steps.map(\.snapshotID))
            #expect(try device.store.installedSnapshot()?.header.snapshotID == "330782-20261122-03")
        }
    }

    @Test("a tampered file is fetched again, then refused with an alert: the installed snapshot stays")
    func tamperedFileIsRefused() async throws {
        try await withHub { hub in
            let (device, sync) = try await SyncCase.syncedKiosk(hub)

            let d2 = try SyncCase.lostCardDelta()
            let published = try hub.hub.database.publishSnapshot(file: d2, now: testEpoch)
            // The hub's disk changes under it: same size, one byte different ("lost" → "lust").
            var bytes = try Data(contentsOf: URL(fileURLWithPath: published.file))
            let at = try #require(bytes.firstRange(of: Data(#""lost""#.utf8)))
            bytes[at.lowerBound + 2] = UInt8(ascii: "u")
            try bytes.write(to: URL(fileURLWithPath: published.file))

            let round = await sync.round()
            guard case .fileRefused(let id, let why)? = round.failure else { Issue.record("\(String(describing: round.failure))"); return }
            // Caught by the manifest's sha256 (fetched twice), before the installer sees it.
            #expect(id == "330782-20261122-02" && round.installed.isEmpty && why.contains("does not match its manifest"))
            #expect(try device.store.installedSnapshot()?.header.snapshotID == SyncCase.full)
            #expect(try device.store.view(cardNumber: "3307820000000017", period: "2026")?.card?.status == .active)
            #expect(try SyncCase.alerts(device, "snapshot_refused").count == 1)
            let status = await sync.status
            #expect(status.lastFailureCode == "snapshot_refused" && round.retryAfter > .zero)
        }
    }

    @Test("a file signed by a key the kiosk does not trust matches its manifest but the installer refuses it")
    func untrustedSignatureIsRefused() async throws {
        try await withHub { hub in
            let (device, sync) = try await SyncCase.syncedKiosk(hub)
            var header = try SyncCase.vectorHeader
            header["snapshot_id"] = "330782-20261122-02"; header["kind"] = "delta"; header["base_snapshot_id"] = SyncCase.full
            header["issued_at"] = "2026-11-22T02:30:00Z"
            let forged = temporaryFolder("forged").appendingPathComponent("forged.jsonl")
            let w = try SnapshotWriter(url: forged, header: header, authorityKey: Curve25519.Signing.PrivateKey())
            try w.add(SyncCase.lostCard())
            try w.finish()
            try hub.hub.database.publishSnapshot(file: forged, now: testEpoch)
            let round = await sync.round()
            guard case .fileRefused(_, let why)? = round.failure else { Issue.record("\(String(describing: round.failure))"); return }
            #expect(why.contains("signature_invalid"))
            #expect(try device.store.installedSnapshot()?.header.snapshotID == SyncCase.full)
        }
    }

    @Test("a download that broke off resumes with Range; a partial file that is wrong is fetched whole again")
    func resumesAPartialDownload() async throws {
        try await withHub { hub in
            let published = try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            let file = try Data(contentsOf: URL(fileURLWithPath: published.file))
            for damaged in [false, true] {
                let device = try SyncCase.kiosk(hub.url)
                let syncDir = device.stateDir.appendingPathComponent("sync")
                try FileManager.default.createDirectory(at: syncDir, withIntermediateDirectories: true)
                var half = file.prefix(file.count / 2)
                if damaged { half[half.startIndex + 10] ^= 0xFF }
                try Data(half).write(to: syncDir.appendingPathComponent("\(SyncCase.full).part"))
                let round = await (try SyncCase.sync(device)).round()
                #expect(round.failure == nil && round.installed.map(\.header.snapshotID) == [SyncCase.full], "damaged \(damaged)")
            }
            // The hub answers the range itself: 206 from the offset, with Content-Range and the ETag.
            let device = try SyncCase.kiosk(hub.url)
            let sync = try SyncCase.sync(device)
            var request = await sync.signedRequest(published.path, range: "bytes=100-")
            request.headers.replaceOrAdd(name: "Range", value: "bytes=100-")
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            #expect(response.status.code == 206 && response.headers.first(name: "Content-Range") == "bytes 100-\(file.count - 1)/\(file.count)")
            #expect(response.headers.first(name: "ETag") == "\"\(published.sha256)\"")
            let body = try await response.body.collect(upTo: 1 << 20)
            #expect(Data(body.readableBytesView) == file.dropFirst(100))
            let beyond = try await HTTPClient.shared.execute(await sync.signedRequest(published.path, range: "bytes=\(file.count)-"), timeout: .seconds(10))
            #expect(beyond.status.code == 416)
        }
    }

    @Test("unsigned, badly signed, unknown or skewed requests get 401 with the hub's time; a kiosk far off raises clock_suspect once")
    func deviceAuthentication() async throws {
        try await withHub { hub in
            try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            let url = "\(hub.url)/v1/regions/330782/snapshots?wait=0"
            let plain = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            #expect(plain.status.code == 401)
            let body = try await plain.body.collect(upTo: 1 << 16)
            let o = try #require(try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any])
            #expect(o["hub_time"] as? String == Timestamp.string(hub.clock.now))

            let device = try SyncCase.kiosk(hub.url)
            // Signed, then one header changed: the signature no longer verifies.
            var tampered = await (try SyncCase.sync(device)).signedRequest("/v1/regions/330782/snapshots?wait=0", range: nil)
            tampered.url = "\(hub.url)/v1/regions/330782/snapshots?wait=1"
            #expect(try await HTTPClient.shared.execute(tampered, timeout: .seconds(10)).status.code == 401)

            // A kiosk clock an hour behind: refused, one clock_suspect alert over two rounds, nothing installed.
            let late = try SyncCase.sync(device, now: testEpoch.addingTimeInterval(-3600))
            for _ in 0..<2 {
                let round = await late.round()
                guard case .refused(401, _, let hubTime)? = round.failure else { Issue.record("\(String(describing: round.failure))"); return }
                #expect(hubTime != nil)
            }
            #expect(try SyncCase.alerts(device, "clock_suspect").count == 1)
            #expect(try device.store.installedSnapshot() == nil)

            // A device the roster no longer holds: 401 too.
            hub.hub.roster = Roster()
            guard case .refused? = await (try SyncCase.sync(device)).round().failure else { Issue.record("an unknown device synced"); return }
        }
    }

    @Test("a long poll returns once a snapshot is published, without waiting out its time")
    func longPoll() async throws {
        try await withHub { hub in
            let (_, sync) = try await SyncCase.syncedKiosk(hub)
            let d2 = try SyncCase.lostCardDelta()
            // The poll asks for up to 300 s; the deadline below fails the test long before that.
            let round = try await withDeadline(seconds: 60, "long poll") {
                async let polled = sync.round(wait: 300)
                try await Task.sleep(for: .milliseconds(300))
                try hub.hub.database.publishSnapshot(file: d2, now: testEpoch)
                return await polled
            }
            #expect(round.failure == nil && round.installed.map(\.header.snapshotID) == ["330782-20261122-02"])
        }
    }

    @Test("nothing published for the region: 404, a clear failure, nothing installed")
    func nothingPublished() async throws {
        try await withHub { hub in
            let device = try SyncCase.kiosk(hub.url)
            let round = await (try SyncCase.sync(device)).round()
            #expect(round.failure == .notPublished(region: "330782"))
            #expect(try device.store.installedSnapshot() == nil)
        }
    }

    @Test("publishing refuses what kiosks could not follow")
    func publishRules() async throws {
        try await withHub { hub in
            let db = hub.hub.database
            let orphan = try SyncCase.delta("330782-20261122-02", base: SyncCase.full, issuedAt: "2026-11-22T02:30:00Z", records: [])
            #expect(throws: PublishError.unknownBase(SyncCase.full)) { try db.publishSnapshot(file: orphan, now: testEpoch) }
            try db.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            try db.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)   // the same bytes again: a no-op
            let older = try SyncCase.delta("330782-20261121-09", base: SyncCase.full, issuedAt: "2026-11-22T02:30:00Z", records: [])
            #expect(throws: PublishError.notNewer(snapshotID: "330782-20261121-09", latest: SyncCase.full)) { try db.publishSnapshot(file: older, now: testEpoch) }
            let junk = temporaryFolder("junk").appendingPathComponent("junk.jsonl")
            try Data("not json\n".utf8).write(to: junk)
            #expect(throws: PublishError.self) { try db.publishSnapshot(file: junk, now: testEpoch) }
            // Refused files leave nothing on the shelf: only the one published file.
            #expect(try FileManager.default.contentsOfDirectory(atPath: db.shelf.path) == ["\(SyncCase.full).jsonl"])
        }
    }
}

/// The manifest's rules, on bytes a lying hub might send.
@Suite struct SyncManifestTests {
    static let sha = String(repeating: "ab", count: 32)

    static func step(_ id: String, kind: String = "delta", base: String?, path: String? = nil, bytes: Any = 100, sha: String = sha) -> [String: Any] {
        var s: [String: Any] = ["snapshot_id": id, "kind": kind, "issued_at": "2026-12-01T08:00:00Z", "bytes": bytes, "sha256": sha,
                                "path": path ?? "/v1/regions/330782/snapshots/\(id)"]
        s["base_snapshot_id"] = base ?? NSNull()
        return s
    }

    static func read(_ o: [String: Any], installed: String? = "A") throws(SyncFailure) -> [String] {
        let bytes = Array((try? JSONSerialization.data(withJSONObject: o)) ?? Data())
        return try SyncManifestReader.steps(bytes, region: "330782", installed: installed, maxFileBytes: 1 << 30).steps.map(\.snapshotID)
    }

    @Test func aGoodChainReads() throws {
        #expect(try Self.read(["region": "330782", "latest": "C", "steps": [Self.step("B", base: "A"), Self.step("C", base: "B")]]) == ["B", "C"])
        #expect(try Self.read(["region": "330782", "latest": "F", "steps": [Self.step("F", kind: "full", base: nil)]], installed: nil) == ["F"])
    }

    @Test func nonsenseIsRefused() {
        let bad: [[String: Any]] = [
            ["region": "330783", "latest": "B", "steps": [Self.step("B", base: "A")]],                         // another region
            ["region": "330782", "latest": "C", "steps": [Self.step("B", base: "A")]],                         // latest not last
            ["region": "330782", "latest": "C", "steps": [Self.step("B", base: "A"), Self.step("C", base: "X")]],   // a gap
            ["region": "330782", "latest": "B", "steps": [Self.step("B", base: "Z")]],                         // not from installed
            ["region": "330782", "latest": "B", "steps": [Self.step("B", base: "A", path: "/etc/passwd")]],    // a path elsewhere
            ["region": "330782", "latest": "B", "steps": [Self.step("B", base: "A", bytes: 1.5)]],             // a size that cannot be
            ["region": "330782", "latest": "B", "steps": [Self.step("B", base: "A", bytes: -1)]],
            ["region": "330782", "latest": "B", "steps": [Self.step("B", base: "A", sha: "XYZ")]],
            ["region": "330782", "latest": "../x", "steps": [Self.step("../x", base: "A")]],                   // an unsafe id
            ["region": "330782", "latest": "B", "steps": []],
            ["region": "330782", "latest": "B"],
        ]
        for o in bad {
            #expect(throws: SyncFailure.self, "\(o)") { try Self.read(o) }
        }
        #expect(throws: SyncFailure.self) {
            try SyncManifestReader.steps(Array("nonsense".utf8), region: "330782", installed: nil, maxFileBytes: 100)
        }
    }
}

@Suite struct CutLinkTests {
    @Test("a download cut off by the network resumes where it stopped on the next round, and installs")
    func aCutDownloadResumes() async throws {
        try await withHub { hub in
            let published = try hub.hub.database.publishSnapshot(file: Vectors.url("snapshot-small.jsonl"), now: testEpoch)
            // The first connection carries the manifest (under 1 KiB) and part of the file, then the link drops.
            let proxy = try CuttingProxy(to: UInt16(hub.running.port), cutAfter: 3000)
            defer { proxy.close() }
            let device = try SyncCase.kiosk("http://127.0.0.1:\(proxy.port)")
            // Its own client: a connection the proxy cut is never reused from a shared pool.
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: Uploader.httpClientConfiguration())
            let environment = UploaderEnvironment(now: { testEpoch.addingTimeInterval(30) }, sleep: { try await Task.sleep(for: $0) },
                                                  random: { 0.5 }, makeBatchID: { "b" })
            let sync = SnapshotSync(store: device.store, device: device.context, signingKey: device.signingKey,
                                    trustedAuthorities: device.trustedAuthorities, directory: device.stateDir.appendingPathComponent("sync"),
                                    configuration: try SyncConfiguration(hubURL: device.config.hubURL, region: device.config.region),
                                    httpClient: client, environment: environment, logger: quietLogger)
            let part = device.stateDir.appendingPathComponent("sync/\(SyncCase.full).part")
            let first = await sync.round()
            let kept = ((try? FileManager.default.attributesOfItem(atPath: part.path))?[.size] as? Int) ?? 0
            let installedBetween = try? device.store.installedSnapshot()
            let second = await sync.round()
            try await client.shutdown()   // closes its connections: the proxy counts them
            proxy.close()
            var counts: [Int] = []
            for _ in 0..<500 {   // generous: a loaded machine closes connections late
                counts = proxy.forwarded.withLock { $0 }
                if counts.count >= 2 { break }
                try await Task.sleep(for: .milliseconds(20))
            }

            #expect(first.failure != nil && first.installed.isEmpty && proxy.cutCount.load(ordering: .relaxed) == 1)
            #expect(kept > 0 && Int64(kept) < published.bytes, "kept \(kept) of \(published.bytes)")
            #expect(installedBetween.flatMap { $0 } == nil)
            #expect(second.failure == nil && second.installed.map(\.header.snapshotID) == [SyncCase.full])
            #expect(!FileManager.default.fileExists(atPath: part.path))
            // Resumed, not fetched again: after the cut connection, less than the file's size came through.
            #expect(counts.count >= 2 && counts.dropFirst().reduce(0, +) < Int(published.bytes), "\(counts)")
        }
    }
}

/// The unlucky kiosk: its sync folder on a disk that fills up mid-download.
@Suite(.serialized) struct SyncFullDiskTests {
    @Test("a download that fills the disk is a storage failure; the installed snapshot stays; with space, the next round installs", .enabled(if: getuid() == 0))
    func aFullDiskDuringADownload() async throws {
        try await withHub { hub in
            let (device, _) = try await SyncCase.syncedKiosk(hub)
            // A delta of about 300 KB: 3,000 cards reported lost.
            let lost = (0..<3000).map { i -> [String: Any] in
                ["type": "card", "card_number": String(format: "33078299%08d", i), "person_ref": "997bb21c2fd71da3a74ad22ada8a3d3e", "status": "lost"]
            }
            try hub.hub.database.publishSnapshot(file: try SyncCase.delta("330782-20261122-02", base: SyncCase.full,
                                                                          issuedAt: "2026-11-22T02:30:00Z", records: lost), now: testEpoch)
            let mountPoint = temporaryFolder("small-disk")
            #expect(runToEnd("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint.path]) == 0)
            defer { _ = runToEnd("/bin/umount", ["-l", mountPoint.path]) }
            let environment = UploaderEnvironment(now: { testEpoch.addingTimeInterval(30) }, sleep: { try await Task.sleep(for: $0) },
                                                  random: { 0.5 }, makeBatchID: { "b" })
            func sync(into directory: URL) throws -> SnapshotSync {
                SnapshotSync(store: device.store, device: device.context, signingKey: device.signingKey,
                             trustedAuthorities: device.trustedAuthorities, directory: directory,
                             configuration: try SyncConfiguration(hubURL: device.config.hubURL, region: device.config.region),
                             environment: environment, logger: quietLogger)
            }
            let full = await (try sync(into: mountPoint.appendingPathComponent("sync"))).round()
            guard case .store(let why)? = full.failure else { Issue.record("\(String(describing: full.failure))"); return }
            #expect(why.contains("disk full"))
            #expect(try device.store.installedSnapshot()?.header.snapshotID == SyncCase.full)
            #expect(try device.store.view(cardNumber: "3307829900000000", period: "2026")?.card == nil)

            let roomy = await (try sync(into: device.stateDir.appendingPathComponent("sync"))).round()
            #expect(roomy.failure == nil && roomy.installed.map(\.header.snapshotID) == ["330782-20261122-02"])
            #expect(try device.store.view(cardNumber: "3307829900000000", period: "2026")?.card?.status == .lost)
        }
    }
}
