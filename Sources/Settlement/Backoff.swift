import Foundation

/// Exponential backoff with jitter (upload spec §3): the n-th failure in a row waits about
/// `initial · 2ⁿ⁻¹`, jittered by ±`jitter`, never less than `initial` nor more than `maximum`.
public struct Backoff: Sendable, Equatable {
    /// The first wait, and the least any wait is.
    public var initial: Duration
    /// The most any wait is.
    public var maximum: Duration
    /// The jitter's half-width as a fraction of the delay (0.25: from 75 % to 125 %).
    public var jitter: Double

    /// Upload spec §3's defaults: 1 s to 5 min, ±25 %.
    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(300), jitter: Double = 0.25) {
        precondition(initial > .zero && maximum >= initial && (0...1).contains(jitter), "backoff bounds")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The wait after the `failures`-th failure in a row (1, 2, …), with `random` in [0, 1).
    public func delay(failures: Int, random: Double) -> Duration {
        let initialSeconds = initial.seconds
        let maximumSeconds = maximum.seconds
        let exponent = Double(min(max(failures, 1) - 1, 62))
        let base = min(maximumSeconds, initialSeconds * pow(2, exponent))
        let r = min(max(random, 0), 1)
        let jittered = base * (1 - jitter + 2 * jitter * r)
        return .milliseconds(Int64((min(maximumSeconds, max(initialSeconds, jittered)) * 1000).rounded()))
    }
}

extension Duration {
    /// The duration in seconds, as a `Double` (for arithmetic on waits, never on money).
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

enum RetryAfter {
    /// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to `now`.
    /// Nil when absent or unreadable; capped at `cap`.
    static func parse(_ value: String?, now: Date, cap: Duration) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let s = Int64(value) {
            guard s >= 0 else { return nil }
            return min(.seconds(s), cap)
        }
        httpDateLock.lock()
        let parsed = httpDate.date(from: value)
        httpDateLock.unlock()
        guard let date = parsed else { return nil }
        let s = max(0, date.timeIntervalSince(now))
        return min(.milliseconds(Int64((s * 1000).rounded(.up))), cap)
    }

    private static let httpDateLock = NSLock()
    private static let httpDate: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f
    }()
}
