import Foundation
import TestVectors
import Testing
import VirtualCard

/// The daemon as it runs: the real `kioskd` binary, real pcscd + vpcd + the emulator,
/// HTTP on loopback (curl), the screen in headless Chromium, SIGTERM.
extension PCSCIntegrationTests {
    /// A running kioskd on a fresh provisioned state folder.
    final class Daemon {
        let process = Process()
        let port = Int.random(in: 20000...29999)
        let stderrFile: URL
        init(stateDir: String, extra: [String] = []) throws {
            process.executableURL = try Harness.product("kioskd")
            process.arguments = ["--state-dir", stateDir, "--port", "\(port)", "--virtual-readers", "--no-upload"] + extra
            process.environment = ProcessInfo.processInfo.environment.merging(["BENEFIT_KIOSK_TEST_NOW": "2026-11-22T03:00:00Z"]) { $1 }
            stderrFile = URL(fileURLWithPath: stateDir).appendingPathComponent("kioskd.log")
            FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: stderrFile)
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            for _ in 0..<100 {
                if (try? get("/healthz"))?.0 == 0 { return }
                Thread.sleep(forTimeInterval: 0.1)
            }
            throw Harness.HarnessError.binaryMissing("kioskd did not answer on \(port)")
        }
        deinit { if process.isRunning { process.terminate() } }

        var base: String { "http://127.0.0.1:\(port)" }
        func get(_ path: String) throws -> (Int32, String) {
            let (s, out, _) = try Harness.exec("/usr/bin/curl", ["-sf", "--max-time", "5", base + path])
            return (s, out)
        }
        func post(_ path: String, _ body: String) throws -> (Int, String) {
            let (_, out, _) = try Harness.exec("/usr/bin/curl", ["-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/json", "-d", body, base + path])
            let parts = out.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(parts.last ?? "") ?? 0, parts.dropLast().joined(separator: "\n"))
        }
        func state() throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(get("/api/state").1.utf8)) as? [String: Any] ?? [:]
        }
        /// Waits (bounded) until the screen shows a result.
        func waitForResult(code: String) throws -> [String: Any] {
            for _ in 0..<100 {
                let s = try state()
                if let r = s["result"] as? [String: Any], r["code"] as? String == code { return r }
                Thread.sleep(forTimeInterval: 0.1)
            }
            Issue.record("no \(code) on the screen: \(try state())")
            return [:]
        }
        /// The page in headless Chromium: a screenshot kept for people, and the DOM for the test.
        func browse(screenshot name: String) throws -> String {
            let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".build/test-screens")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--timeout=4000", "--window-size=1024,768", "--lang=zh-CN"]
            let (s, _, e) = try Harness.exec("/usr/bin/chromium", flags + ["--screenshot=\(dir.appendingPathComponent(name).path)", base + "/"])
            #expect(s == 0, "\(e)")
            let png = try Data(contentsOf: dir.appendingPathComponent(name))
            #expect(png.count > 10_000 && png.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
            return try Harness.exec("/usr/bin/chromium", flags + ["--dump-dom", base + "/"]).1
        }
        func stop() throws -> (Int32, String) {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(15)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(!process.isRunning, "kioskd did not stop on SIGTERM")
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            return (process.terminationStatus, (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "")
        }
    }

    @Test func hospitalKioskEndToEnd() throws {
        let dir = try provisionedStateDir()
        let d = try Daemon(stateDir: dir)
        #expect(try d.state()["phase"] as? String == "idle")
        // Bill intake: bad requests are refused with a reason.
        #expect(try d.post("/api/bills", #"{"bill_reference":"H1","bill_fen":12.5}"#).0 == 400)
        #expect(try d.post("/api/bills", #"{"bill_reference":"H1","bill_fen":-5}"#).0 == 400)
        #expect(try d.post("/api/bills", "not json").0 == 400)
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-20261122-1","bill_fen":10000}"#).0 == 202)
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-other","bill_fen":100}"#).0 == 409)
        let sse = Process()
        sse.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        sse.arguments = ["-sN", "--max-time", "4", d.base + "/events"]
        let pipe = Pipe()
        sse.standardOutput = pipe
        try sse.run()
        Thread.sleep(forTimeInterval: 0.3)

        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            let r = try d.waitForResult(code: "granted")
            #expect(r["subsidy_fen"] as? Int == 10000 && r["patient_pays_fen"] as? Int == 0 && r["card_number"] as? String == "3307********0017")
            #expect((r["records"] as? [String]) == ["KSK-TEST-0001-1"])
            #expect(((r["programs"] as? [[String: Any]])?.first?["remaining_fen"] as? Int) == 30000)
            let dom = try d.browse(screenshot: "hospital-granted.png")
            #expect(dom.contains(#"data-code="granted""#) && dom.contains("已贴补") && dom.contains("¥100.00"))
            #expect(!dom.contains("王秀英"))
            #expect((r["receipt"] as? String)?.hasPrefix("printed") == true)
        }
        // The receipt went to the file printer: its QR (read back with zbarimg) verifies.
        let receipts = try FileManager.default.contentsOfDirectory(atPath: dir + "/receipts")
        let png = try #require(receipts.first { $0.hasSuffix(".png") })
        let (vs, vout, verr) = try Harness.run("kioskctl", ["receipt", "verify", "--state-dir", dir, dir + "/receipts/" + png])
        #expect(vs == 0 && vout.contains("VALID receipt KSK-TEST-0001-1") && vout.contains("100.00"), "\(verr)")
        #expect(receipts.contains { $0.hasSuffix(".escpos") } && receipts.contains { $0.hasSuffix(".txt") })
        sse.waitUntilExit()
        let events = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(events.contains("event: state") && events.contains(#""phase":"reading""#) && events.contains(#""code":"granted""#))
        // No bill: a card shows its status.
        try Harness.withCard(Vectors.emulator("3307820000000033")) { _, _ in
            let r = try d.waitForResult(code: "person_suspended")
            #expect(r["detail"] as? String == "停保")
            #expect(try d.browse(screenshot: "hospital-suspended.png").contains("救助已暂停"))
        }
        let metrics = try d.get("/metrics").1
        #expect(metrics.contains(#"kiosk_decisions_total{code="granted"} 1"#))
        let health = try JSONSerialization.jsonObject(with: Data(d.get("/healthz").1.utf8)) as? [String: Any]
        #expect(health?["status"] as? String == "ok" && health?["queued_records"] as? Int == 1 && health?["pcscd"] as? Bool == true)
        let (status, log) = try d.stop()
        #expect(status == 0 && log.contains("kioskd stopped"))
    }

    @Test func townshipTerminalLegalAid() throws {
        let dir = try provisionedStateDir()
        // Re-provision the same device as a township terminal (keeps key and sequence).
        let keys = Vectors.keys
        let (s, _, e) = try Harness.run("kioskctl", [
            "provision", "--state-dir", dir, "--device-id", "KSK-TEST-0001", "--institution", "330782-T01", "--profile", "township",
            "--issuer-key", "330782-issuer-test=\((keys["issuer"] as! [String: String])["public_key"]!)",
            "--authority-key", "330782-auth-test=\((keys["authority"] as! [String: String])["public_key"]!)",
            "--device-ca-key", "\(TestDevices.ca.id)=\(TestDevices.ca.publicKey)",
            "--hub-url", "http://127.0.0.1:9", "--printer", "file:\(dir)/receipts/"])
        #expect(s == 0, "\(e)")
        let d = try Daemon(stateDir: dir)
        #expect(try d.post("/api/bills", #"{"bill_reference":"X","bill_fen":100}"#).0 == 404)
        #expect(try d.post("/api/legal-aid", #"{"matter":"labor_remuneration"}"#).0 == 409)   // no card
        try Harness.withCard(Vectors.emulator("3307820000100025")) { _, _ in
            let r = try d.waitForResult(code: "eligible")
            #expect(((r["programs"] as? [[String: Any]])?.first?["matters"] as? [[String: String]])?.count == 8)
            let dom = try d.browse(screenshot: "township-status.png")
            #expect(dom.contains("优先受理、优先审批、优先指派") && dom.contains("请求支付劳动报酬"))
            #expect(try d.post("/api/legal-aid", #"{"matter":"labor_remuneration"}"#).0 == 202)
            let applied = try d.waitForResult(code: "applied")
            #expect(applied["matter"] as? String == "labor_remuneration" && (applied["records"] as? [String])?.count == 1)
            #expect(try d.browse(screenshot: "township-applied.png").contains("已提交法律援助申请"))
            #expect((applied["receipt"] as? String)?.hasPrefix("printed") == true)
        }
        #expect(try d.stop().0 == 0)
    }
}
