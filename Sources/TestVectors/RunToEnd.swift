import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to its end (posix_spawn + waitpid: Foundation's Process can miss a
/// child's exit inside async tests). Its exit status, -1 when it cannot start, or
/// `runToEndTimedOut` when it has not ended within `timeout` seconds (it is killed then:
/// a stuck program fails the test that ran it instead of hanging the run).
public func runToEnd(_ path: String, _ arguments: [String], timeout: Double = 60) -> Int32 {
    var pid: pid_t = 0
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    guard posix_spawn(&pid, path, nil, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return (status >> 8) & 0xFF }
        if r < 0 && errno != EINTR { return -1 }
        if Date() >= deadline {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return runToEndTimedOut
        }
        usleep(10_000)
    }
}

/// What `runToEnd` returns for a program killed at its deadline (as timeout(1) does).
public let runToEndTimedOut: Int32 = 124

/// Runs blocking work (child processes, big synchronous loops) on a thread of its own, so a
/// long test does not hold one of the few threads the test run's concurrency pool has (other
/// tests' async waits would starve). Record expectations after it returns, in the test.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in Thread { c.resume(with: Result { try body() }) }.start() }
}

/// Runs `body` with a tmpfs of `size` (mount(8)'s form: "64k", "2m") mounted on a fresh
/// folder under `parent`, unmounted afterwards whatever `body` does: a real full disk for the
/// unlucky-kiosk tests. Needs root. Throws when the mount fails.
public func withSmallDisk<T>(_ size: String, under parent: URL, _ body: (URL) throws -> T) throws -> T {
    let mountPoint = parent.appendingPathComponent("small-disk-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
    let status = runToEnd("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mountPoint.path])
    guard status == 0 else { throw SmallDiskError(status: status) }
    defer { _ = runToEnd("/bin/umount", ["-l", mountPoint.path]) }
    return try body(mountPoint)
}

/// mount(8) of the small disk failed with this exit status.
public struct SmallDiskError: Error, CustomStringConvertible {
    public let status: Int32
    public var description: String { "mount -t tmpfs exited \(status)" }
}
