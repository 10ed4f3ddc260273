import Foundation
import TestVectors
import Testing
import VirtualCard

extension PCSCIntegrationTests {
    /// `kioskctl doctor --json` on `dir`: its exit status and each check's result by name.
    func doctor(_ dir: String, environment: [String: String] = [:]) throws -> (Int32, [String: [String: Any]], String) {
        let env = ["BENEFIT_KIOSK_TEST_NOW": "2026-11-22T03:00:00Z", "BENEFIT_KIOSK_VIRTUAL_READERS": "1"].merging(environment) { $1 }
        let (status, out, err) = try Harness.run("kioskctl", ["doctor", "--state-dir", dir, "--hub-timeout", "2", "--json"], environment: env)
        let object = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        let checks = (object?["checks"] as? [[String: Any]]) ?? []
        return (status, Dictionary(checks.map { ($0["check"] as? String ?? "", $0) }) { a, _ in a }, err)
    }

    /// Sets `reader` in the state folder's device.json (nil removes it).
    func configureReader(_ dir: String, _ reader: String?) throws {
        let file = URL(fileURLWithPath: dir).appendingPathComponent("device.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        config["reader"] = reader
        try JSONSerialization.data(withJSONObject: config).write(to: file)
    }

    @Test("kioskctl doctor through pcscd (issue 23 item 2): the card service stopped, the configured reader absent and a card that is not authentic each fail; a good card passes")
    func doctorThroughPCSCD() throws {
        let dir = try provisionedStateDir()
        try configureReader(dir, Harness.reader)
        let (_, idle, e0) = try doctor(dir)
        #expect(idle["pcscd"]?["result"] as? String == "ok", "\(idle) \(e0)")
        #expect(idle["reader"]?["result"] as? String == "ok", "\(idle)")
        #expect(idle["card"]?["result"] as? String == "skipped", "\(idle)")
        #expect(idle["hub"]?["result"] as? String == "failed", "no hub on port 9: \(idle)")

        // The card service not answering (a client pointed at a socket no pcscd serves).
        let (status, stopped, _) = try doctor(dir, environment: ["PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"])
        #expect(status == 6)
        #expect(stopped["pcscd"]?["result"] as? String == "failed", "\(stopped)")

        // The configured reader is not connected.
        try configureReader(dir, "No Such Reader 00 00")
        let (_, absent, _) = try doctor(dir)
        #expect(absent["reader"]?["result"] as? String == "failed", "\(absent)")
        #expect((absent["reader"]?["words"] as? String)?.contains(Harness.reader) == true, "the words name the readers there are")
        try configureReader(dir, Harness.reader)

        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            let (_, good, _) = try doctor(dir)
            #expect(good["card"]?["result"] as? String == "ok", "\(good)")
            #expect((good["card"]?["words"] as? String)?.contains("0017") == true)
        }
        try Harness.withCard(Vectors.emulator("3307820000000017", Misbehaviour(tamperHolder: true))) { _, _ in
            let (_, bad, _) = try doctor(dir)
            #expect(bad["card"]?["result"] as? String == "failed", "\(bad)")
        }
    }
}

