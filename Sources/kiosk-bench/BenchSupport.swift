import Crypto
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Test material of `specs/vectors/test-keys.json` (TEST KEYS ONLY).
enum TestAuthority {
    static let keyID = "330782-auth-test"
    static let privateSeed = "pCbtCCxCT0qB5zHJODXniuUIoe+FaGUYpApux+O5Z2w="
    static let publicKey = "oYIOYJP8glBE21IWS59YdxSMi796YEYlgjPf3cEJoaU="
    static let region = "330782"

    static func privateKey() throws -> Curve25519.Signing.PrivateKey {
        try Curve25519.Signing.PrivateKey(rawRepresentation: Data(base64Encoded: privateSeed)!)
    }

    static func trusted() throws -> [String: Curve25519.Signing.PublicKey] {
        [keyID: try Curve25519.Signing.PublicKey(rawRepresentation: Data(base64Encoded: publicKey)!)]
    }
}

/// Memory figures of this process.
enum Memory {
    /// Peak resident set size, MB (getrusage `ru_maxrss`, KiB on Linux).
    static func peakMB() -> Double {
        var u = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_maxrss) / 1024
        #else
        getrusage(RUSAGE_SELF, &u)
        return Double(u.ru_maxrss) / 1_048_576   // bytes on Darwin
        #endif
    }

    /// Current resident set size, MB (`VmRSS` of /proc/self/status), or -1 where unavailable.
    static func currentMB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) } ?? -1
            return kb / 1024
        }
        return -1
    }
}

/// Monotonic seconds since an arbitrary origin.
func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Latency line in the format of `CardBench.report`; `samples` in microseconds.
func reportLatency(_ name: String, _ samples: [Double]) {
    guard !samples.isEmpty else {
        print("swift \(name) n=0")
        return
    }
    let s = samples.sorted()
    let mean = s.reduce(0, +) / Double(s.count)
    let p50 = s[s.count / 2], p99 = s[min(s.count - 1, s.count * 99 / 100)]
    print(String(format: "swift %@ n=%d mean_us=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f", name, s.count, mean, p50, p99, s[s.count - 1]))
}

/// Waits on this (non-async) thread for async work, for the benches' synchronous commands.
/// Never call it from a task of Swift concurrency.
func waitFor<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        let r: Result<T, any Error>
        do { r = .success(try await work()) } catch { r = .failure(error) }
        result.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}
