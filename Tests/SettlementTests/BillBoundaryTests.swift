import Foundation
import GRDB
import KioskCore
import KioskStore
@testable import Settlement
import HubHTTP
import HubStore
import Testing

@Suite("A bill's records travel in one batch")
struct BillBoundaryTests {
    /// Queues record texts as the kiosk's queue holds them (raw: the setup is not what is tested).
    static func queue(_ device: Device, _ records: [[String: Any]]) throws {
        try device.store.pool.write { db in
            let id = device.config.deviceID
            try db.execute(sql: "INSERT INTO device_sequence (device_id, last_seq) VALUES (?, 0) ON CONFLICT(device_id) DO NOTHING", arguments: [id])
            for r in records {
                let seq = try #require(r["seq"] as? Int)
                try db.execute(sql: """
                    INSERT INTO record (device_id, seq, record_id, kind, created_at, body, amount_fen) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [id, seq, r["record_id"] as? String, r["kind"] as? String, r["created_at"] as? String, try HubCase.text(r),
                                     (r["subsidy_fen"] as? Int) ?? 0])
                try db.execute(sql: "UPDATE device_sequence SET last_seq = ? WHERE device_id = ?", arguments: [seq, id])
            }
        }
    }

    @Test("the two-program bill is not split at the batch limit; the hub takes every record")
    func twoProgramBillNotSplit() async throws {
        try await withHub(now: vectorHubClock) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            // alert 1, the vectors' two-program bill as seq 2 and 3, alert 4; two records a batch at most.
            var bill = try HubCase.vectorRecords("two_program_batch_body")
            for i in bill.indices {
                bill[i]["seq"] = i + 2
                bill[i]["record_id"] = "KSK-TEST-0001-\(i + 2)"
            }
            try Self.queue(device, [HubCase.alert(seq: 1)] + bill + [HubCase.alert(seq: 4)])
            let summary = try await makeUploader(device) { $0.maxRecords = 2 }.drainOnce()
            #expect(summary.outcome == .drained && summary.accepted == 4 && summary.rejected.isEmpty, "\(summary)")
            let batches = try hub.hub.database.engine.read { c in try c.rows("SELECT records FROM hub_batch ORDER BY id").map { try $0.int("records") } }
            #expect(batches == [1, 2, 1], "[alert 1] [bill] [alert 4]")
            #expect(try hub.hub.database.recordCount() == 4)
        }
    }
}
