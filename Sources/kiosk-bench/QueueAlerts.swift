import ArgumentParser
import Foundation
import KioskStore

/// Issue 24 item 3's load: a kiosk's queue filled with records to drain while taps go on.
/// Alerts (upload spec §1, kind `alert`) are real records the hub checks and stores without a
/// card: the drain's work on the kiosk (read, sign a batch, send, mark each answer) is a
/// subsidy's, and the hub, on the same two cores here, spends no Ed25519 per record.
struct QueueAlerts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue-alerts",
        abstract: "Appends COUNT alert records of a device to a kiosk store's upload queue.")

    @Option(help: "The kiosk's store (STATE/kiosk.sqlite).") var db: String
    @Option(help: "The device the records are of (the store's own).") var deviceId: String
    @Option var institution = "330782-H01"
    @Option var count = 5000

    func validate() throws {
        guard count > 0 else { throw ValidationError("--count must be positive") }
    }

    func run() throws {
        let store = try KioskStore(path: db)
        let device = DeviceContext(deviceID: deviceId, institution: institution)
        let t0 = Date()
        for i in 0..<count {
            _ = try store.recordAlert(device: device, code: "bench_load", cardNumber: nil, detail: "issue 24 load record \(i + 1) of \(count)", now: Date())
        }
        print(String(format: "queue-alerts count=%d device=%@ seconds=%.2f queued=%d", count, deviceId, Date().timeIntervalSince(t0),
                     try store.recordCount(status: .queued)))
    }
}
