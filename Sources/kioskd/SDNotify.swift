import Foundation
import SystemdSupport
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// RLIMIT_NOFILE: the soft limit raised towards `wanted`, never past the hard limit.
enum FileLimit {
    static func raise(to wanted: UInt64) -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        let target = min(UInt64(limit.rlim_max), wanted)
        if UInt64(limit.rlim_cur) < target {
            limit.rlim_cur = rlim_t(target)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return UInt64(limit.rlim_cur)
    }
}
