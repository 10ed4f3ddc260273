import ArgumentParser
import Foundation
import KioskCore
import TestVectors
import Testing
@testable import kioskctl

/// kioskctl's commands run in-process (issue 22 item 3): they end with `ExitCode` and
/// `ValidationError` thrown, not `exit(3)`, so a test sees the status and `defer` blocks run.
@Suite struct InProcessTests {
    /// Parses `arguments` as kioskctl does and runs the command; the exit code it ends with.
    static func run(_ arguments: [String]) -> Int32 {
        do {
            var command = try KioskCtl.parseAsRoot(arguments)
            try command.run()
            return 0
        } catch {
            return KioskCtl.exitCode(for: error).rawValue
        }
    }

    @Test("an unprovisioned kiosk: snapshot status, certificate show and clock status end 6 (not ready) in-process")
    func unprovisionedKiosk() throws {
        let dir = try Scratch.makeFolder("kioskctl-in-process")
        #expect(Self.run(["snapshot", "status", "--state-dir", dir.path]) == KioskExit.notReady.rawValue)
        #expect(Self.run(["certificate", "show", "--state-dir", dir.path]) == KioskExit.notReady.rawValue)
        #expect(Self.run(["queue", "--state-dir", dir.path]) == KioskExit.notReady.rawValue)
    }

    @Test("bad usage is a ValidationError before anything runs: exit 64")
    func badUsage() {
        #expect(Self.run(["queue", "--status", "lost", "--state-dir", "/nonexistent"]) == KioskExit.usage.rawValue)
        #expect(Self.run(["queue", "--status", "queued", "--state-dir", "/nonexistent"]) == KioskExit.notReady.rawValue)
        #expect(Self.run(["no-such-command"]) == KioskExit.usage.rawValue)
    }

    /// Parses and runs; the exit code and the message kioskctl prints for the failure.
    static func outcome(_ arguments: [String]) -> (code: Int32, message: String) {
        do {
            var command = try KioskCtl.parseAsRoot(arguments)
            try command.run()
            return (0, "")
        } catch {
            return (KioskCtl.exitCode(for: error).rawValue, KioskCtl.message(for: error))
        }
    }

    @Test("provision (issue 23 item 3): --printer and, with no snapshot, --region are required; --paper and --printer are checked; each usage error exits 64 naming its option")
    func provisionUsage() throws {
        let dir = try Scratch.makeFolder("kioskctl-provision")
        let base = ["provision", "--state-dir", dir.path, "--device-id", "KSK-TEST-0009", "--institution", "330782-H01",
                    "--profile", "hospital", "--hub-url", "http://127.0.0.1:9",
                    "--issuer-key", "330782-issuer-test=\(TestDevices.issuerKeys.first!.value)"]
        let noPrinter = Self.outcome(base + ["--region", "330782"])
        #expect(noPrinter.code == 64 && noPrinter.message.contains("--printer"), "\(noPrinter)")
        let noRegion = Self.outcome(base + ["--printer", "none"])
        #expect(noRegion.code == 64 && noRegion.message.contains("--region"), "\(noRegion)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("device.json").path), "provisioned despite a usage error")
        let paper = Self.outcome(base + ["--printer", "none", "--region", "330782", "--paper", "57"])
        #expect(paper.code == 64 && paper.message.contains("--paper"), "\(paper)")
        let printer = Self.outcome(base + ["--printer", "lpt1", "--region", "330782"])
        #expect(printer.code == 64 && printer.message.contains("--printer"), "\(printer)")

        let ok = Self.outcome(base + ["--printer", "none", "--region", "330782", "--paper", "80", "--reader", "Virtual PCD 00 00"])
        #expect(ok.code == 0, "\(ok)")
        let device = try Device(stateDir: dir)
        #expect(!device.config.printsSlips && device.config.paperWidth == .mm80 && device.config.reader == "Virtual PCD 00 00")
        #expect(device.config.region == "330782")
        // Provisioned again without --region: the region given before stays.
        #expect(Self.outcome(base + ["--printer", "none"]).code == 0)
        #expect(try Device(stateDir: dir).config.region == "330782")
    }

    @Test("device.json with a paper width other than 58 or 80, or a printer that does not parse, is refused when read, never taken as another")
    func deviceConfigEnums() throws {
        let dir = try Scratch.makeFolder("kioskctl-config")
        #expect(Self.run(["provision", "--state-dir", dir.path, "--device-id", "KSK-TEST-0009", "--institution", "330782-H01",
                          "--profile", "hospital", "--hub-url", "http://127.0.0.1:9", "--printer", "file:\(dir.path)/r/",
                          "--region", "330782"]) == 0)
        let file = dir.appendingPathComponent("device.json")
        let good = try Data(contentsOf: file)
        for (key, value) in [("paper", "57"), ("paper", "\"80\""), ("printer", "\"lpt1\""), ("reader", "\"  \"")] {
            var object = try #require(try JSONSerialization.jsonObject(with: good) as? [String: Any])
            object[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
            try JSONSerialization.data(withJSONObject: object).write(to: file)
            #expect(throws: DeviceError.self, "\(key)=\(value) was accepted") { try Device(stateDir: dir) }
        }
        try good.write(to: file)
        #expect(try Device(stateDir: dir).config.paperWidth == .mm58)
    }
}
