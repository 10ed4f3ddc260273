import Foundation
import KioskProtocol
import KioskStore

/// The kiosk's health as `GET /healthz` reports it: the store's figures (counted by SQL, no
/// row loaded), the snapshot, the clock floor and the certificate. The daemon adds what only
/// it knows (sync, pcscd, screen streams); `healthy` false answers 503.
public struct HealthReport: Sendable {
    /// The report's JSON fields (`JSONSerialization` values).
    public var fields: [String: any Sendable]
    /// False when the store could not be read: the kiosk must not be taken for working.
    public var healthy: Bool

    /// Reads the report of `kiosk`'s device at `kiosk`'s clock.
    public static func read(_ kiosk: Kiosk) -> HealthReport {
        let device = kiosk.device
        var o: [String: any Sendable] = ["device_id": device.config.deviceID, "profile": device.config.profile.rawValue]
        // The file first (issue 23 item 5): a store replaced, removed or overwritten under the
        // daemon answers reads from what it still holds open; the kiosk must not look healthy.
        if let problem = device.store.fileProblem() {
            o["store_error"] = problem
            return HealthReport(fields: o, healthy: false)
        }
        do {
            let now = kiosk.clock.now()
            let snapshot = try device.store.installedSnapshot()
            o["snapshot"] = snapshot?.header.snapshotID ?? NSNull()
            o["snapshot_expired"] = snapshot.map { (Timestamp.date($0.header.expiresAt) ?? .distantPast) <= now } ?? true
            if let issued = snapshot.flatMap({ Timestamp.date($0.header.issuedAt) }) {
                o["snapshot_age_s"] = Int(now.timeIntervalSince(issued))
            }
            o["queued_records"] = try device.store.recordCount(status: .queued)
            o["rejected_records"] = try device.store.recordCount(status: .rejected)
            o["pending_deductions"] = try device.store.pendingDeductionCount()
            let floor = try device.store.clockFloor()
            o["clock_suspect"] = floor.suspicion(at: now) != nil
            if let f = floor.floor { o["clock_floor"] = Timestamp.string(f) }
            if let cert = device.certificate {
                o["certificate_valid_through"] = "\(cert.validThrough)"
                o["certificate_valid"] = cert.isValid(at: now)
            } else {
                o["certificate_valid"] = false
            }
            if let w = kiosk.certificateWarning(now: now) { o["certificate_warning"] = w }
            if device.config.profile == .hospital { o["bill_api_token"] = device.billAPIToken != nil }
            return HealthReport(fields: o, healthy: true)
        } catch {
            o["store_error"] = "\(error)"
            return HealthReport(fields: o, healthy: false)
        }
    }
}
