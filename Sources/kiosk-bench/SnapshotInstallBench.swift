import ArgumentParser
import KioskProtocol
import Foundation
import KioskStore

struct SnapshotInstallBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot-install",
        abstract: "Install a snapshot (test authority trusted) and print its time and peak memory.")

    @Option(help: "Snapshot file.") var file: String
    @Option(help: "Store file; created when missing.") var db: String
    @Flag(help: "Delete the store (and its -wal, -shm) first.") var fresh = false
    @Option(help: "The kiosk's clock for the install (RFC 3339; default: now). A snapshot issued more than 10 minutes after it is refused (issued_in_future).")
    var now: String?

    func run() throws {
        if fresh {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + suffix) }
        }
        let clock: Date
        if let now {
            guard let d = Timestamp.date(now) else { throw ValidationError("--now is not an RFC 3339 time") }
            clock = d
        } else {
            clock = Date()
        }
        let store = try KioskStore(path: db)
        let trusted = try TestAuthority.trusted()
        print(String(format: "rss_before_mb=%.1f peak_rss_before_mb=%.1f", Memory.currentMB(), Memory.peakMB()))
        let t0 = monotonicSeconds()
        let report: InstallReport
        do {
            report = try store.installSnapshot(at: URL(fileURLWithPath: file), trustedAuthorities: trusted, now: clock)
        } catch let refusal as SnapshotRefusal {
            throw ValidationError(refusal.description)
        }
        let seconds = monotonicSeconds() - t0
        let dbBytes = ["", "-wal"].reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: db + $1)[.size] as? Int) ?? 0) }
        print(String(format: "install_seconds=%.2f records=%d peak_rss_mb=%.1f rss_after_mb=%.1f kind=%@ snapshot_id=%@ ignored=%d db_mb=%.1f",
                     seconds, report.records, Memory.peakMB(), Memory.currentMB(), report.header.kind, report.header.snapshotID,
                     report.ignoredRecords, Double(dbBytes) / 1_048_576))
    }
}
