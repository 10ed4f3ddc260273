import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to its end (posix_spawn + waitpid: Foundation's Process can miss a
/// child's exit inside async tests). Its exit status, or -1 when it cannot start.
public func runToEnd(_ path: String, _ arguments: [String]) -> Int32 {
    var pid: pid_t = 0
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    guard posix_spawn(&pid, path, nil, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status >> 8) & 0xFF
}
