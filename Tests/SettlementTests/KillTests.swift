import Foundation
import HubFaults
import KioskCore
import KioskStore
import HubHTTP
import HubStore
import TestVectors
import Testing

/// `kioskctl upload` as a real process, killed with SIGKILL while its batch is in flight.
@Suite("kioskctl upload, killed mid-upload")
struct KillTests {
    static func kioskctl() throws -> String { try product("kioskctl") }

    /// One of the package's executables, built beside the tests.
    static func product(_ name: String) throws -> String {
        let beside = Vectors.productsDirectory.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside.path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let fallback = root.appendingPathComponent(".build/debug/\(name)")
        try #require(FileManager.default.isExecutableFile(atPath: fallback.path), "build \(name) first (swift build --build-tests)")
        return fallback.path
    }

    /// A child process started with posix_spawn (Foundation's Process can hang in async tests),
    /// its output in files; waited for by polling waitpid(WNOHANG), so no pool thread blocks.
    struct Child {
        let pid: pid_t
        let stdout: URL
        let stderr: URL

        static func spawn(_ path: String, _ arguments: [String], in dir: URL, environment: [String: String] = [:]) throws -> Child {
            let out = dir.appendingPathComponent("stdout-\(UUID().uuidString)")
            let err = dir.appendingPathComponent("stderr-\(UUID().uuidString)")
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 1, out.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_addopen(&actions, 2, err.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            let argv = ([path] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { env.forEach { free($0) } }
            let rc = posix_spawn(&pid, path, &actions, nil, argv, env)
            try #require(rc == 0, "posix_spawn \(path): \(rc)")
            return Child(pid: pid, stdout: out, stderr: err)
        }

        /// The exit status (128 + N when killed by signal N); nil if still running after `timeout`
        /// (it is killed then, so a stuck child fails its test and does not outlive it).
        func wait(timeout: Duration = .seconds(60)) async -> Int32? {
            let deadline = ContinuousClock.now + timeout
            var status: Int32 = 0
            while ContinuousClock.now < deadline {
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid {
                    if status & 0x7F == 0 { return (status >> 8) & 0xFF }
                    return 128 + (status & 0x7F)
                }
                if r < 0 && errno != EINTR { return -1 }
                try? await Task.sleep(for: .milliseconds(20))
            }
            // A last look: on a starved test pool the sleep above can outlast the deadline
            // while the child has long finished.
            if waitpid(pid, &status, WNOHANG) == pid {
                return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
            }
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return nil
        }

        var output: String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
        var errors: String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }
    }

    @Test("SIGKILL while a batch is in flight, then upload again: every record once at the hub, the queue empty")
    func killMidUpload() async throws {
        let kioskctl = try Self.kioskctl()
        // The hub stores each batch, then sits on the answer: the kiosk is killed while waiting.
        try await withHub(limits: HubLimits(maxRecords: 25), faults: HubFaults(delay: .seconds(10))) { hub in
            let dir = temporaryFolder("kill")
            let stateDir = dir.appendingPathComponent("state")
            let device = try provisionDevice(hubURL: hub.url, stateDir: stateDir)
            let records = try queueAlerts(device, 60)

            let first = try Child.spawn(kioskctl, ["upload", "--once", "--state-dir", stateDir.path], in: dir)
            // In flight: the hub has the first batch and is holding the answer.
            let inFlight = await eventually(timeout: .seconds(60)) { ((try? hub.hub.database.recordCount()) ?? 0) > 0 }
            try #require(inFlight, "the first batch never reached the hub: \(first.errors)")
            #expect(kill(first.pid, SIGKILL) == 0)
            let storedBeforeKill = try hub.hub.database.recordCount()
            #expect(await first.wait() == 128 + SIGKILL)
            #expect(try device.store.queuedCount() == 60, "nothing was marked: the answer never came")

            hub.hub.faults = .none
            let second = try Child.spawn(kioskctl, ["upload", "--state-dir", stateDir.path], in: dir)
            let status = await second.wait()
            #expect(status == 0, "\(second.output)\n\(second.errors)")
            #expect(second.output.contains("60 accepted (\(storedBeforeKill) already at the hub)"), "\(second.output)")

            #expect(try device.store.queuedCount() == 0)
            let held = try hub.hub.database.records(deviceID: Fixtures.deviceID)
            #expect(held.count == 60)
            #expect(Set(held.map(\.recordID)).count == 60)
            #expect(held.map(\.body) == records.map(\.body))
            let kiosk = try device.store.records(limit: 100)
            #expect(kiosk.allSatisfy { $0.status == .accepted && $0.receivedAt != nil })
        }
    }

    @Test("kioskctl upload: hub unreachable → exit 5 with a clear message; nonsense → exit 8; records kept")
    func uploadExitCodes() async throws {
        let kioskctl = try Self.kioskctl()
        let hub = try await HubFixture.start()
        let deadURL = hub.url
        await hub.stop()
        let dir = temporaryFolder("ctl")
        let stateDir = dir.appendingPathComponent("state")
        let device = try provisionDevice(hubURL: deadURL, stateDir: stateDir)
        try queueAlerts(device, 2)
        let down = try Child.spawn(kioskctl, ["upload", "--once", "--state-dir", stateDir.path], in: dir)
        #expect(await down.wait() == 5)
        #expect(down.errors.contains("could not be reached"), "\(down.errors)")
        #expect(down.errors.contains("2 records stay queued"), "\(down.errors)")

        try await withHub(faults: HubFaults(failFirst: 1, failure: .nonsense(.wrongCount))) { live in
            let stateDir2 = dir.appendingPathComponent("state2")
            let device2 = try provisionDevice(hubURL: live.url, stateDir: stateDir2)
            try queueAlerts(device2, 2)
            let nonsense = try Child.spawn(kioskctl, ["upload", "--state-dir", stateDir2.path], in: dir)
            #expect(await nonsense.wait() == 8)
            #expect(nonsense.errors.contains("nonsense"), "\(nonsense.errors)")
            #expect(try device2.store.queuedCount() == 2)

            let ok = try Child.spawn(kioskctl, ["upload", "--json", "--state-dir", stateDir2.path], in: dir)
            #expect(await ok.wait() == 0)
            let json = try JSONSerialization.jsonObject(with: Data(ok.output.utf8)) as? [String: Any]
            #expect(json?["accepted"] as? Int == 2)
            #expect(json?["queued"] as? Int == 0)
        }
    }
}
