import Foundation

/// The specs' one time form, RFC 3339 in UTC to the second: `YYYY-MM-DDTHH:MM:SSZ`. The only
/// reader and writer of it: the kiosk, the hub and the publisher give one answer for a text.
public enum Timestamp {
    /// `YYYY-MM-DDTHH:MM:SSZ`, the second cut down. Years outside 1583–9999 (no spec time is)
    /// are left to Foundation's formatter, whose calendar is Julian before the reform.
    public static func string(_ d: Date) -> String { string(d, fractional: false) }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` when `fractional` (the milliseconds cut down; the hub's own
    /// `received_at`, never a contract field), else `string(_:)`.
    public static func string(_ d: Date, fractional: Bool) -> String {
        let t = d.timeIntervalSince1970
        guard t.isFinite, t > -12_000_000_000, t < 253_402_300_800 else { return foundationFormatter(fractional: fractional).string(from: d) }
        let seconds = Int64(t.rounded(.down))
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let (year, month, day) = CivilCalendar.date(days: days)
        guard year >= 1583, year <= 9999 else { return foundationFormatter(fractional: fractional).string(from: d) }
        let inDay = seconds - days * 86400
        var out = [UInt8](repeating: 0, count: fractional ? 24 : 20)
        func put(_ v: Int64, at: Int, width: Int) {
            var v = v
            for i in stride(from: at + width - 1, through: at, by: -1) { out[i] = UInt8(0x30 + v % 10); v /= 10 }
        }
        put(year, at: 0, width: 4); out[4] = 0x2D; put(month, at: 5, width: 2); out[7] = 0x2D; put(day, at: 8, width: 2)
        out[10] = 0x54; put(inDay / 3600, at: 11, width: 2); out[13] = 0x3A; put(inDay / 60 % 60, at: 14, width: 2)
        out[16] = 0x3A; put(inDay % 60, at: 17, width: 2)
        if fractional {
            out[19] = 0x2E
            put(min(999, Int64(((t - Double(seconds)) * 1000).rounded(.down))), at: 20, width: 3)
        }
        out[out.count - 1] = 0x5A
        return String(decoding: out, as: UTF8.self)
    }

    /// The instant `s` names when it is exactly `YYYY-MM-DDTHH:MM:SSZ`, or nil.
    ///
    /// Refused: a fraction of a second, an offset (`+08:00`, even `+00:00`), lowercase `t` or
    /// `z`, second 60 (a leap second is not a spec time), hour 24, a day the month does not have
    /// (February 30), anything before or after the time, non-ASCII digits.
    public static func date(_ s: String) -> Date? {
        var utf8 = s
        return utf8.withUTF8 { parse($0, text: s) }
    }

    static func parse(_ p: UnsafeBufferPointer<UInt8>, text: String) -> Date? {
        guard p.count == 20 else { return nil }
        @inline(__always) func digits(_ at: Int, _ count: Int) -> Int? {
            var v = 0
            for i in at..<(at + count) {
                let d = Int(p[i]) &- 0x30
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
            }
            return v
        }
        guard let year = digits(0, 4), p[4] == UInt8(ascii: "-"), let month = digits(5, 2), p[7] == UInt8(ascii: "-"),
              let day = digits(8, 2), p[10] == UInt8(ascii: "T"), let hour = digits(11, 2), p[13] == UInt8(ascii: ":"),
              let minute = digits(14, 2), p[16] == UInt8(ascii: ":"), let second = digits(17, 2), p[19] == UInt8(ascii: "Z"),
              (1...12).contains(month), day >= 1, hour <= 23, minute <= 59, second <= 59 else { return nil }
        let leap = year % 4 == 0 && (year < 1583 || year % 100 != 0 || year % 400 == 0)
        let monthDays = month == 2 ? (leap ? 29 : 28) : (month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31)
        guard day <= monthDays else { return nil }
        guard year >= 1583 else {
            // Before the Gregorian reform Foundation's calendar is Julian: let it count, so that
            // `string(_:)` and `date(_:)` stay each other's inverse there too.
            return foundationFormatter(fractional: false).date(from: text)
        }
        let days = Int(CivilCalendar.days(year: Int64(year), month: Int64(month), day: Int64(day)))
        return Date(timeIntervalSince1970: Double(days * 86400 + hour * 3600 + minute * 60 + second))
    }

    /// Foundation's formatter for what the fast paths leave to it (years before the
    /// Gregorian reform or past 9999). Made per use: `ISO8601DateFormatter` is not `Sendable`.
    static func foundationFormatter(fractional: Bool) -> ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = fractional ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        return f
    }
}

/// The one lenient reader of RFC 3339, for one field only: a hub's `received_at` answer, read
/// as any RFC 3339 time (a fraction, an offset) so that a kiosk never fails to settle an accepted
/// record over its spelling, and made into what the store keeps: UTC, `Z`, second
/// precision, a fraction of a second rounded UP. Rounding up keeps the `settled_through`
/// comparison (snapshot spec §5) conservative: a record received at 01:59:00.4 is not
/// counted as settled by a snapshot settled through 01:59:00.
public enum ReceivedAt {
    /// `2026-11-22T03:00:01.250+08:00` → `2026-11-21T19:00:02Z`; nil if not RFC 3339.
    public static func normalise(_ text: String) -> String? {
        guard let (seconds, fraction) = parse(text) else { return nil }
        return Timestamp.string(Date(timeIntervalSince1970: Double(seconds + (fraction ? 1 : 0))))
    }

    /// Seconds since 1970 (whole seconds, floor) and whether a non-zero fraction followed.
    static func parse(_ text: String) -> (Int64, Bool)? {
        let b = Array(text.utf8)
        var i = 0
        func digits(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var v: Int64 = 0
            for k in i..<(i + n) {
                guard b[k] >= 0x30 && b[k] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[k] - 0x30)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8...) -> Bool {
            guard i < b.count, c.contains(b[i]) else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(0x2D), let month = digits(2), expect(0x2D), let day = digits(2),
              expect(0x54, 0x74, 0x20), let hour = digits(2), expect(0x3A), let minute = digits(2), expect(0x3A), let second = digits(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= CivilCalendar.daysIn(month: month, year: year), hour <= 23, minute <= 59, second <= 60 else { return nil }
        var fraction = false
        if i < b.count && b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.count && b[i] >= 0x30 && b[i] <= 0x39 {
                if b[i] != 0x30 { fraction = true }
                i += 1
            }
            guard i > start else { return nil }
        }
        var offset: Int64 = 0
        if expect(0x5A, 0x7A) {
            offset = 0
        } else if i < b.count && (b[i] == 0x2B || b[i] == 0x2D) {
            let sign: Int64 = b[i] == 0x2D ? -1 : 1
            i += 1
            guard let oh = digits(2), expect(0x3A), let om = digits(2), oh <= 23, om <= 59 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = CivilCalendar.days(year: year, month: month, day: day)
        return (days * 86400 + hour * 3600 + minute * 60 + second - offset, fraction)
    }
}
