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
}
