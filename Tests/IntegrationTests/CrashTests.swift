import BenefitCard
import Foundation
import KioskCore
import KioskStore
import TestVectors
import Testing
import VirtualCard

/// kill -9 of `kioskctl charge` at every step of the deduction (card spec §6), through the
/// real binary, pcscd and the emulator: the next presentation resolves it exactly once.
extension PCSCIntegrationTests {
    /// A kiosk provisioned with the vectors' keys and certificate; with `hubURL` nil it has
    /// no hub and gets the vectors' snapshot installed, else it syncs `region` from the hub.
    func provisionedStateDir(hubURL: String? = nil, region: String? = nil) throws -> String {
        let dir = Scratch.folder(hubURL == nil ? "crash" : "sync-e2e").path
        let keys = Vectors.keys
        let issuer = try #require(keys["issuer"] as? [String: String])
        let authority = try #require(keys["authority"] as? [String: String])
        let device = try #require((keys["devices"] as? [String: [String: String]])?["KSK-TEST-0001"])
        let certFile = "\(dir)/KSK-TEST-0001.cert"
        try TestDevices.certificate("KSK-TEST-0001").hexString.write(toFile: certFile, atomically: true, encoding: .utf8)
        let (s1, _, e1) = try Harness.run("kioskctl", [
            "provision", "--state-dir", dir, "--device-id", "KSK-TEST-0001", "--institution", "330782-H01", "--profile", "hospital",
            "--issuer-key", "330782-issuer-test=\(try #require(issuer["public_key"]))",
            "--authority-key", "330782-auth-test=\(try #require(authority["public_key"]))",
            "--device-ca-key", "\(TestDevices.ca.id)=\(TestDevices.ca.publicKey)", "--device-cert", certFile,
            "--hub-url", hubURL ?? "http://127.0.0.1:9", "--printer", "file:\(dir)/receipts/", "--region", region ?? "330782",
            "--device-key-seed", try #require(device["private_seed"]),
        ], environment: ["BENEFIT_KIOSK_TEST_NOW": "2026-11-22T03:00:00Z"])
        #expect(s1 == 0, "\(e1)")
        if hubURL != nil { return dir }
        let (s2, out, e2) = try Harness.run("kioskctl", ["snapshot", "install", "--state-dir", dir, Vectors.url("snapshot-small.jsonl").path],
                                            environment: ["BENEFIT_KIOSK_TEST_NOW": "2026-11-22T03:00:00Z"])
        #expect(s2 == 0 && out.contains("installed 330782-20261122-01"), "\(e2)")
        return dir
    }

    func kioskctl(_ dir: String, _ args: [String], crashAt: String? = nil) throws -> (Int32, [String: Any]?, String) {
        var env = ["BENEFIT_KIOSK_TEST_NOW": "2026-11-22T03:00:00Z", "BENEFIT_KIOSK_VIRTUAL_READERS": "1", "BENEFIT_KIOSK_STATE_DIR": dir]
        if let crashAt { env["BENEFIT_KIOSK_TEST_CRASH_AT"] = crashAt }
        let (status, out, err) = try Harness.run("kioskctl", args + ["--json"], environment: env)
        return (status, try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], err)
    }

    @Test(arguments: ["after-pending", "after-card-write", "after-commit"])
    func killedAtEveryStepOfTheDeduction(_ step: String) throws {
        let dir = try provisionedStateDir()
        let emulator = Vectors.emulator("3307820000000017")
        try Harness.withCard(emulator) { _, _ in
            let (status, _, _) = try kioskctl(dir, ["charge", "--bill-fen", "10000", "--bill-ref", "K1"], crashAt: step)
            #expect(status == 128 + 9, "kioskctl should have been killed at \(step)")
        }
        let written = try UsageRecord(fileBytes: try #require(emulator.file(3))).sequence == 4
        #expect(written == (step != "after-pending"))
        // Presented again: resolved by reading the card, once.
        try Harness.withCard(emulator) { _, _ in
            let (status, check, err) = try kioskctl(dir, ["check"])
            #expect(status == 0, "\(err)")
            #expect(check?["programs"].flatMap { ($0 as? [[String: Any]])?.first?["remaining_fen"] as? Int } == (written ? 30000 : 40000))
            let (_, again, _) = try kioskctl(dir, ["check"])
            #expect(again?["resolved_pending"] == nil)   // nothing left to resolve
        }
        let device = try Device(stateDir: URL(fileURLWithPath: dir))
        #expect(try device.store.pendingDeductions().isEmpty)
        let subsidies = try device.store.records().filter { $0.kind == .medicalSubsidy }
        #expect(subsidies.count == (written ? 1 : 0))
        // The next charge works and the sequence has no gap.
        try Harness.withCard(emulator) { _, _ in
            let (status, charge, err) = try kioskctl(dir, ["charge", "--bill-fen", "5000", "--bill-ref", "K2"])
            #expect(status == 0 && charge?["decision"] as? String == "granted", "\(err)")
            // Written: the resolution's confirming write took sequence 5 (for the card's
            // acknowledgement), so this charge writes 6.
            #expect(charge?["card_sequence"] as? Int == ["after-pending": 4, "after-card-write": 6, "after-commit": 5][step])
        }
        let seqs = try device.store.records().map(\.seq)
        #expect(seqs == Array(1...Int64(seqs.count)))
    }

    @Test func kioskctlGoldenAnswers() throws {
        let dir = try provisionedStateDir()
        // A refused snapshot: one line, exit 8, and an alert record.
        let bad = Scratch.file("bad", extension: "jsonl")
        var text = try String(contentsOf: Vectors.url("snapshot-small.jsonl"), encoding: .utf8)
        text = text.replacingOccurrences(of: "\"used_fen\":20000", with: "\"used_fen\":10000")
            .replacingOccurrences(of: "\"issued_at\":\"2026-11-22T02:00:00Z\"", with: "\"issued_at\":\"2026-11-22T02:05:00Z\"")
        try text.write(to: bad, atomically: true, encoding: .utf8)
        let (s, _, err) = try Harness.run("kioskctl", ["snapshot", "install", "--state-dir", dir, bad.path],
                                          environment: ["BENEFIT_KIOSK_TEST_NOW": "2026-11-22T03:00:00Z"])
        #expect(s == 8 && err == "kioskctl: snapshot refused (sha256_mismatch): sha256 does not match the file\n")
        let (_, q, _) = try kioskctl(dir, ["queue"])
        let records = (q?["records"] as? [[String: Any]]) ?? []
        #expect(records.contains { (($0["record"] as? [String: Any])?["code"] as? String) == "snapshot_refused" })
        // Reversal through the CLI.
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            let (st, charge, _) = try kioskctl(dir, ["charge", "--bill-fen", "10000", "--bill-ref", "G1"])
            #expect(st == 0)
            let id = (charge?["records"] as? [String])?.first ?? ""
            let (rs, out, _) = try Harness.run("kioskctl", ["reverse", id, "--reason", "wrong patient", "--operator", "op-1", "--state-dir", dir])
            #expect(rs == 0 && out.contains("reversed \(id)"))
            let (rs2, _, err2) = try Harness.run("kioskctl", ["reverse", id, "--reason", "again", "--operator", "op-1", "--state-dir", dir])
            #expect(rs2 == 8 && err2.contains("already reversed"))
        }
        let (cs, _, cerr) = try Harness.run("kioskctl", ["charge", "--bill-fen", "0", "--bill-ref", "x", "--state-dir", dir])
        #expect(cs == 64 && cerr.contains("--bill-fen must be a positive number of fen"))
        let (ns, _, nerr) = try Harness.run("kioskctl", ["check", "--state-dir", "/nonexistent-bk"])
        #expect(ns == 6 && nerr.contains("not provisioned"))
    }
}
