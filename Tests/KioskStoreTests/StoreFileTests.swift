import Foundation
import KioskCore
import KioskProtocol
import KioskStore
import Testing

/// Issue 23 item 5: health that tells the truth. The store's file replaced, removed or
/// overwritten under a running kiosk is noticed without scanning it, and a provisioned device
/// whose store is gone is never given a new one (its record sequence must not restart).
@Suite struct StoreFileTests {
    static func freshDevice() throws -> Device { try Fixture.device() }

    @Test("a store untouched has no problem; removed, replaced by a file or a folder, or overwritten in place, it says so")
    func everyWayTheFileGoes() throws {
        let d = try Self.freshDevice()
        let path = d.store.path
        #expect(d.store.fileProblem() == nil)
        #expect(HealthReport.read(Kiosk(device: d, clock: .fixed(Fixture.now))).healthy)

        // Overwritten in place (the same inode): its header is no longer SQLite's.
        let saved = try Data(contentsOf: URL(fileURLWithPath: path))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.write(contentsOf: Data((0..<4096).map { _ in UInt8.random(in: 0...255) }))
        try h.close()
        #expect(d.store.fileProblem()?.contains("no longer a SQLite database") == true, "\(d.store.fileProblem() ?? "nil")")
        let report = HealthReport.read(Kiosk(device: d, clock: .fixed(Fixture.now)))
        #expect(!report.healthy && (report.fields["store_error"] as? String)?.contains("SQLite") == true)
        try saved.write(to: URL(fileURLWithPath: path))   // same inode again, same bytes
        #expect(d.store.fileProblem() == nil)

        // Replaced by another file (a restore done wrong while the daemon runs).
        let other = path + ".other"
        try saved.write(to: URL(fileURLWithPath: other))
        #expect(rename(other, path) == 0)
        #expect(d.store.fileProblem()?.contains("replaced") == true)

        // Removed; then a folder in its place.
        try FileManager.default.removeItem(atPath: path)
        #expect(d.store.fileProblem()?.contains("gone") == true)
        #expect(!HealthReport.read(Kiosk(device: d, clock: .fixed(Fixture.now))).healthy)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect(d.store.fileProblem()?.contains("not a regular file") == true || d.store.fileProblem()?.contains("no longer a regular file") == true)
    }

    @Test("a provisioned device whose store is missing is refused, by opening and by provisioning again; nothing new is made")
    func noNewStoreForAProvisionedDevice() throws {
        let d = try Self.freshDevice()
        let dir = d.stateDir
        _ = try d.store.recordAlert(device: d.context, code: "printer_fault", cardNumber: nil, detail: "x", now: Fixture.now)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: d.store.path + suffix) }
        #expect(throws: DeviceError.storeMissing(d.store.path)) { try Device(stateDir: dir) }
        #expect(throws: DeviceError.storeMissing(d.store.path)) {
            try Device.provision(stateDir: dir, config: d.config, seed: nil, replaceKey: false)
        }
        #expect(!FileManager.default.fileExists(atPath: d.store.path), "a new store was made")
        #expect(DeviceError.storeMissing("/x/kiosk.sqlite").description.contains("restore it from the backup"))
    }
}
