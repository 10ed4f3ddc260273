import KioskProtocol
import Foundation
import HubStore

/// The shelf's bookkeeping: how snapshots are named and when old ones leave it.
extension SnapshotPublisher {
    /// Sync spec §5: deltas are kept at least `keepFor` (30 days). Snapshots older than that
    /// and older than the latest full (no manifest leads through them any more) leave the
    /// shelf, file and row.
    func prune(now instant: Date) throws {
        let region = configuration.region
        let before = Timestamp.string(instant.addingTimeInterval(-configuration.keepFor))
        let files: [String] = try database.engine.write { c in
            guard let fullSeq = try c.int("SELECT MAX(seq) FROM hub_snapshot WHERE region = ? AND kind = 'full'", region) else { return [] }
            let old = try c.texts("SELECT file FROM hub_snapshot WHERE region = ? AND seq < ? AND issued_at < ?", region, fullSeq, before)
            try c.execute("DELETE FROM hub_snapshot WHERE region = ? AND seq < ? AND issued_at < ?", region, fullSeq, before)
            return old
        }
        for f in files { try? FileManager.default.removeItem(atPath: f) }
    }

    /// `<region>-<YYYYMMDD>-<HHMMSS>` in China Standard Time: ids grow with the clock.
    static func snapshotID(region: String, at date: Date) -> String {
        let t = Int64(date.timeIntervalSince1970.rounded(.down)) + 8 * 3600
        let days = t >= 0 ? t / 86400 : (t - 86399) / 86400
        let (y, m, d) = CivilCalendar.date(days: days)
        let s = t - days * 86400
        return region + "-" + String(format: "%04lld%02lld%02lld-%02lld%02lld%02lld", y, m, d, s / 3600, s / 60 % 60, s % 60)
    }
}
