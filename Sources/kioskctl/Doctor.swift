import ArgumentParser
import Foundation
import KioskCore

/// `kioskctl doctor` (issue 23 item 2): every part a kiosk needs, one line each in plain
/// words, and an exit status a script can test: 0 when nothing failed (warnings allowed),
/// 6 (not ready) when a check failed.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the kiosk: pcscd, reader, card, printer, certificate, snapshot, hub and clock, bill token, disk, screen, voice.",
        discussion: """
        One line per check: OK, WARN (works, but see to it), FAIL (the kiosk cannot serve people \
        until it is fixed) or SKIP (does not apply here). Exit 0 when nothing failed, 6 when a check \
        failed. The device checks need a provisioned state folder; pcscd, the readers, the font and \
        the screen are checked even without one.
        """)
    @OptionGroup var state: StateOptions
    @Flag(help: "Also use vpcd's \"Virtual PCD\" readers (demo, tests, training). Also BENEFIT_KIOSK_VIRTUAL_READERS=1.")
    var virtualReaders = false
    @Flag(help: "Print a test page on the receipt printer (the page says which device and when).") var testPage = false
    @Flag(help: "Play a voice prompt through the screen's sound output (SCREEN_ENV's KIOSK_ALSA_DEVICE) with aplay.") var sound = false
    @Option(help: "The screen's environment file: its KIOSK_ALSA_DEVICE is the sound output.") var screenEnv = "/etc/benefit-kiosk/screen.env"
    @Option(help: "The program that plays the test prompt.") var player = "/usr/bin/aplay"
    @Option(help: "Seconds to wait for the hub.") var hubTimeout = 10
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard (1...120).contains(hubTimeout) else { throw ValidationError("--hub-timeout is 1…120 seconds") }
    }

    func run() throws {
        var probe = DoctorProbe.live
        probe.virtualReaders = virtualReaders || ProcessInfo.processInfo.environment["BENEFIT_KIOSK_VIRTUAL_READERS"] == "1"
        probe.hubTimeout = .seconds(hubTimeout)
        probe.player = player
        probe.screenEnvFile = screenEnv
        if let now = try? KioskClock.fromEnvironment().now() { probe.now = { now } }
        let checks = DoctorChecks(stateDir: state.url, probe: probe)
        let (testPage, sound) = (testPage, sound)
        let findings = blockingAwait { await checks.run(testPage: testPage, sound: sound) }
        if json {
            printJSON(["checks": findings.map { ["check": $0.check, "result": $0.level.rawValue, "words": $0.words] },
                       "ok": !findings.contains { $0.level == .failed }])
        } else {
            for f in findings { print(f.line) }
            let failed = findings.filter { $0.level == .failed }.count
            print(failed == 0 ? "ready: no check failed" : "not ready: \(failed) check\(failed == 1 ? "" : "s") failed (FAIL above)")
        }
        if findings.contains(where: { $0.level == .failed }) { throw ExitCode(ExitStatus.notReady.rawValue) }
    }
}

/// One check's result.
struct Finding: Equatable, Sendable {
    /// How the check came out.
    enum Level: String, Sendable {
        /// Works.
        case ok
        /// Works, but needs seeing to (a certificate running out, a file printer).
        case warning
        /// The kiosk cannot serve people until it is fixed.
        case failed
        /// Does not apply here (no card on the reader, voice off, no systemd).
        case skipped
    }
    var check: String
    var level: Level
    var words: String

    /// `OK   pcscd        the PC/SC service answers`.
    var line: String {
        let tag = ["ok": "OK", "warning": "WARN", "failed": "FAIL", "skipped": "SKIP"][level.rawValue]!
        return tag.padding(toLength: 5, withPad: " ", startingAt: 0) + check.padding(toLength: 12, withPad: " ", startingAt: 0) + words
    }
}

/// What the checks read from the machine, injectable for tests: the clock, free disk
/// space, systemd, the font, the sound player and the screen's environment file.
struct DoctorProbe: Sendable {
    var now: @Sendable () -> Date
    /// Free bytes for an unprivileged writer on the file system holding the path.
    var freeBytes: @Sendable (String) -> Int64?
    /// `systemctl ARGS`: its exit status and output; nil when systemd is not running here.
    var systemctl: @Sendable ([String]) -> (status: Int32, output: String)?
    /// Font families covering Chinese (`fc-list :lang=zh family`); nil when fontconfig is missing.
    var chineseFonts: @Sendable () -> [String]?
    var virtualReaders = false
    var hubTimeout: Duration = .seconds(10)
    var player = "/usr/bin/aplay"
    var screenEnvFile = "/etc/benefit-kiosk/screen.env"
    /// Programs the screen service starts.
    var screenPrograms = ["/usr/bin/cage", "/usr/bin/chromium"]

    static let live = DoctorProbe(
        now: { Date() },
        freeBytes: { path in
            var s = statvfs()
            guard statvfs(path, &s) == 0 else { return nil }
            return Int64(s.f_bavail) * Int64(s.f_frsize)
        },
        systemctl: { args in
            guard FileManager.default.fileExists(atPath: "/run/systemd/system") else { return nil }
            return DoctorProbe.execute("/usr/bin/systemctl", args)
        },
        chineseFonts: {
            guard let r = DoctorProbe.execute("/usr/bin/fc-list", [":lang=zh", "family"]), r.status == 0 else { return nil }
            return r.output.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        })

    /// Runs a program to its end; its exit status and standard output (nil when it cannot start).
    static func execute(_ program: String, _ args: [String]) -> (status: Int32, output: String)? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
