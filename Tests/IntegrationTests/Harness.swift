import BenefitCard
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SmartCard
import TestVectors
import Testing
import VirtualCard

/// The real things: pcscd (started by Provisioning/test.sh), vpcd's first virtual
/// reader and the project's emulator connected to it over TCP.
enum Harness {
    static let reader = "Virtual PCD 00 00"
    static let port: UInt16 = 35963

    /// Puts a card in the virtual reader, waits until pcscd sees it, runs `body`, pulls it.
    ///
    /// On a loaded machine (CI runs the unit suites beside these) pcscd has been seen to miss
    /// a reinsertion right after a client was killed mid-transaction: the card is then pulled
    /// and inserted again, up to three times, each miss printed with the reader's state.
    static func withCard<T>(_ emulator: CardEmulator, _ body: (PCSCContext, VPCDClient) throws -> T) throws -> T {
        let ctx = try PCSCContext()
        let client = VPCDClient(emulator: emulator, port: port)
        defer {
            client.remove()
            _ = try? ctx.waitForCard(in: reader, present: false, timeout: 10)
        }
        var seen = false
        for attempt in 1...3 where !seen {
            try client.insert(timeout: 10)
            seen = try ctx.waitForCard(in: reader, present: true, timeout: 10)
            if !seen {
                let state = (try? ctx.readerState(reader)).map { "present=\($0.cardPresent) mute=\($0.mute) events=\($0.eventCount)" } ?? "unknown"
                print("harness: pcscd did not see the card (attempt \(attempt), \(state)); inserting it again")
                client.remove()
                _ = try? ctx.waitForCard(in: reader, present: false, timeout: 10)
            }
        }
        guard seen else { throw HarnessError.cardNotSeen }
        return try body(ctx, client)
    }

    enum HarnessError: Error { case cardNotSeen, binaryMissing(String), timedOut(String) }

    /// A product built beside the tests (`swift build` runs before `swift test` in test.sh).
    static func product(_ name: String) throws -> URL {
        var dir = Vectors.productsDirectory
        let url = dir.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let fallback = dir.appendingPathComponent(".build/debug/\(name)")
            guard FileManager.default.isExecutableFile(atPath: fallback.path) else { throw HarnessError.binaryMissing(name) }
            return fallback
        }
        return url
    }

    /// Runs any program; returns exit status (128 + N when killed by signal N), stdout and stderr.
    /// A program still running after `timeout` seconds is killed and the call throws
    /// `HarnessError.timedOut`: a stuck child fails its test instead of hanging the run.
    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+; not in Swift's Glibc module).
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }

    static func exec(_ path: String, _ arguments: [String], environment: [String: String] = [:],
                     timeout: TimeInterval = 120) throws -> (Int32, String, String) {
        // posix_spawn + waitpid, not Foundation's Process: with hundreds of short children in
        // one run (curl every 0.1 s while a screen is awaited), Process was seen to miss a
        // child's exit and hang in waitUntilExit on a zombie (see TestVectors.runToEnd).
        // Output goes into files, not pipes: a child that fills one pipe while the other is
        // read first would block for good (issue 8).
        let outURL = Scratch.file("stdout", extension: "txt"), errURL = Scratch.file("stderr", extension: "txt")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outURL.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errURL.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Nothing else of ours: a child holding a copy of a card emulator's vpcd socket would
        // keep a "pulled" card in the reader for as long as it runs.
        if let addCloseFrom { _ = addCloseFrom(&actions, 3) }
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard spawned == 0 else { throw HarnessError.binaryMissing("\(path): posix_spawn \(spawned)") }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { throw HarnessError.timedOut("\(path): waitpid failed (\(errno))") }
            if Date() >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                throw HarnessError.timedOut("\((path as NSString).lastPathComponent) \(arguments.joined(separator: " ")): still running after \(timeout) s, killed")
            }
            usleep(5_000)
        }
        let o = (try? Data(contentsOf: outURL)) ?? Data()
        let e = (try? Data(contentsOf: errURL)) ?? Data()
        // 128 + N when killed by signal N.
        let code: Int32 = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return (code, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// Runs a product built beside the tests.
    static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: TimeInterval = 120) throws -> (Int32, String, String) {
        try exec(product(name).path, arguments, environment: environment, timeout: timeout)
    }
}
