import KioskProtocol
import Foundation
import KioskStore
import TestVectors
import Testing
import VirtualCard
#if canImport(Glibc)
import Glibc
#endif

/// Sync spec §2–4 with the real binaries: `settlement-hub` serving on loopback, `kioskd`
/// long-polling it, a card on the virtual reader.
extension PCSCIntegrationTests {
    /// A `settlement-hub` process on a free loopback port with the vectors' roster.
    final class HubProcess {
        let process = Process()
        let port = Int.random(in: 30000...39999)
        let db: String
        let logFile: URL
        init(dir: String) throws {
            db = dir + "/hub.sqlite"
            process.executableURL = try Harness.product("settlement-hub")
            process.arguments = ["serve", "--db", db, "--port", "\(port)", "--snapshot", Vectors.url("snapshot-small.jsonl").path]
            logFile = URL(fileURLWithPath: dir).appendingPathComponent("hub.log")
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: logFile)
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            for _ in 0..<100 {
                if (try? Harness.exec("/usr/bin/curl", ["-sf", "--max-time", "2", "\(url)/v1/health"], timeout: 5))?.0 == 0 { return }
                Thread.sleep(forTimeInterval: 0.1)
            }
            throw Harness.HarnessError.binaryMissing("settlement-hub did not answer on \(port)")
        }
        deinit { if process.isRunning { process.terminate(); process.waitUntilExit() } }
        var url: String { "http://127.0.0.1:\(port)" }

        /// `settlement-hub publish` into the running hub's database.
        func publish(_ file: String) throws -> String {
            let (s, out, err) = try Harness.run("settlement-hub", ["publish", "--db", db, file])
            #expect(s == 0, "\(err)")
            return out
        }
    }

    /// A delta on the vectors' full that reports card 0017 lost, signed by the test authority.
    func lostCardDelta(dir: String) throws -> String {
        let lines = String(decoding: Vectors.data("snapshot-small.jsonl"), as: UTF8.self).split(separator: "\n")
        let first = try #require(lines.first)
        var header = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        header["snapshot_id"] = "330782-20261122-02"
        header["kind"] = "delta"
        header["base_snapshot_id"] = "330782-20261122-01"
        header["issued_at"] = "2026-11-22T02:30:00Z"
        let a = try #require(Vectors.keys["authority"] as? [String: String])
        let seedText = try #require(a["private_seed"])
        let seed = try #require(Data(base64Encoded: seedText))
        let path = dir + "/delta.jsonl"
        let w = try SnapshotWriter(url: URL(fileURLWithPath: path), header: header, authorityKey: try .init(rawRepresentation: seed))
        try w.add(["type": "card", "card_number": "3307820000000017", "person_ref": "997bb21c2fd71da3a74ad22ada8a3d3e", "status": "lost",
                   "public_key": "XOWI9ptiWfLv7v4sj/CD67RvlLLW8wXZef2TkbaaHy4="])
        try w.finish()
        return path
    }

    /// Issue 9: a kiosk with no snapshot syncs the published full by itself; a card reported
    /// lost at the platform is refused at the long-polling kiosk within seconds; `kioskctl
    /// snapshot sync` then says it is up to date.
    @Test func aLostCardPublishedAtTheHubIsRefusedAtTheKioskWithinSeconds() throws {
        let hubDir = Scratch.folder("hub-e2e").path
        let hub = try HubProcess(dir: hubDir)
        #expect(try hub.publish(Vectors.url("snapshot-small.jsonl").path).contains("published 330782-20261122-01 (full"))
        let dir = try provisionedStateDir(hubURL: hub.url, region: "330782")   // no snapshot: sync brings it
        let d = try Daemon(stateDir: dir, network: true, realClock: true)

        func health() throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(d.get("/healthz").1.utf8)) as? [String: Any] ?? [:]
        }
        func waitForSnapshot(_ id: String) throws -> Bool {
            for _ in 0..<300 {   // 30 s at most; it takes well under a second here
                if try health()["snapshot"] as? String == id { return true }
                Thread.sleep(forTimeInterval: 0.1)
            }
            return false
        }
        #expect(try waitForSnapshot("330782-20261122-01"), "the start-up round did not install the full: \(d.log)")
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            _ = try d.waitForResult(code: "eligible")
        }

        // The platform reports the card lost: the kiosk, long-polling, installs the delta.
        #expect(try hub.publish(try lostCardDelta(dir: hubDir)).contains("published 330782-20261122-02 (delta on 330782-20261122-01"))
        #expect(try waitForSnapshot("330782-20261122-02"), "the long poll did not bring the delta: \(d.log)")
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            _ = try d.waitForResult(code: "card_lost")
        }
        let sync = try #require(try health()["sync"] as? [String: Any])
        #expect(sync["last_success"] != nil && sync["consecutive_failures"] as? Int == 0)
        let metrics = try d.get("/metrics").1
        #expect(metrics.contains(#"kiosk_sync_rounds_total{result="ok"}"#) && metrics.contains("kiosk_snapshot_issued_timestamp_seconds"))
        #expect(metrics.contains("kiosk_snapshot_installs_total 2"))

        // One round by hand: nothing newer.
        let (s, out, err) = try Harness.run("kioskctl", ["snapshot", "sync", "--state-dir", dir])
        #expect(s == 0 && out.contains("up to date"), "\(err)")
        #expect(try d.stop().0 == 0)
    }
}

extension PCSCIntegrationTests {
    /// Issue 24 item 3, with the real binaries: a patient's subsidy is queued while the card is
    /// on the reader; kioskd's uploader holds it until the card leaves (the patient first),
    /// then the hub has it.
    @Test func theUploaderWaitsForThePatientsCardToLeave() throws {
        let hubDir = Scratch.folder("hub-hold").path
        let hub = try HubProcess(dir: hubDir)
        _ = try hub.publish(Vectors.url("snapshot-small.jsonl").path)
        let dir = try provisionedStateDir(hubURL: hub.url, region: "330782")
        let d = try Daemon(stateDir: dir, network: true, realClock: true)
        func health() throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(d.get("/healthz").1.utf8)) as? [String: Any] ?? [:]
        }
        for _ in 0..<300 where try health()["snapshot"] as? String != "330782-20261122-01" { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-HOLD-1","bill_fen":1000}"#).0 == 202)
        let cookie = try d.screenCookie()
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            _ = try d.waitForResult(code: "confirm")
            #expect(try d.press("confirm", "H-HOLD-1", cookie: cookie).0 == 202)
            _ = try d.waitForResult(code: "granted")
            Thread.sleep(forTimeInterval: 3)
            #expect(try health()["queued_records"] as? Int == 1, "the subsidy went to the hub while the card was on the reader: \(d.log)")
        }
        var queued = -1
        for _ in 0..<600 {
            queued = try health()["queued_records"] as? Int ?? -1
            if queued == 0 { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(queued == 0, "the card left and the subsidy was not sent: \(d.log)")
        #expect(try d.stop().0 == 0)
    }
}
