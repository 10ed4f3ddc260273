import Crypto
import Foundation
import GRDB
import KioskCore
import KioskStore
import Settlement
import HubHTTP
import HubStore
import Testing

/// Queue drain rate: 10,000 queued records drained to the local hub (budget ≥ 5,000 records/s).
/// Opt-in, it is a measurement: `SETTLEMENT_BENCH=1 swift test --skip-build --filter DrainBenchmark`.
/// It prints the rate against the budget; it checks that everything was delivered, never how
/// fast (a loaded machine must not fail a test).
@Suite("Drain benchmark", .enabled(if: ProcessInfo.processInfo.environment["SETTLEMENT_BENCH"] == "1"))
struct DrainBenchmark {
    /// Queues `count` medical_subsidy records shaped like real ones, in one transaction
    /// (the setup is not what is measured).
    static func queueSubsidies(_ device: Device, _ count: Int) throws {
        let cardKey = try TestCards.privateKey("3307820000000017")
        try device.store.pool.write { db in
            try db.execute(sql: "INSERT INTO device_sequence (device_id, last_seq) VALUES (?, 0) ON CONFLICT(device_id) DO NOTHING",
                           arguments: [device.config.deviceID])
            let start = try #require(try Int64.fetchOne(db, sql: "SELECT last_seq FROM device_sequence WHERE device_id = ?", arguments: [device.config.deviceID]))
            let insert = try db.makeStatement(sql: """
                INSERT INTO record (device_id, seq, record_id, kind, created_at, body, amount_fen) VALUES (?, ?, ?, 'medical_subsidy', ?, ?, ?)
                """)
            for i in 1...Int64(count) {
                let seq = start + i
                let id = "\(device.config.deviceID)-\(seq)"
                // A v2 record the hub takes: the card's own acknowledgement of its write.
                let challenge = (0..<16).map { UInt8(truncatingIfNeeded: Int(seq) &* 31 &+ $0) }
                let ack = try cardKey.signature(for: TestCards.ackMessage(cardNumber: "3307820000000017", sequence: UInt32(seq),
                                                                          challenge: challenge))
                let body: [String: Any] = [
                    "record_id": id, "seq": seq, "kind": "medical_subsidy", "created_at": "2026-11-22T03:00:00Z",
                    "snapshot_id": "330782-20261122-01", "card_number": "3307820000000017",
                    "person_ref": "997bb21c2fd71da3a74ad22ada8a3d3e", "program": "HM-SUBSIDY",
                    "period": "2026", "bill_reference": "H01-20261122-\(seq)", "bill_fen": 10000, "subsidy_fen": 10000,
                    "patient_pays_fen": 0, "used_before_fen": 20000, "used_after_fen": 30000, "card_sequence": seq,
                    "card_challenge": TestCards.hex(challenge), "card_ack": ack.base64EncodedString(), "institution": "330782-H01",
                ]
                let text = String(decoding: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
                try insert.execute(arguments: [device.config.deviceID, seq, id, "2026-11-22T03:00:00Z", text, 10000])
            }
            try db.execute(sql: "UPDATE device_sequence SET last_seq = ? WHERE device_id = ?", arguments: [start + Int64(count), device.config.deviceID])
        }
    }

    @Test("10,000 queued records drained to the local hub")
    func drain10k() async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try Self.queueSubsidies(device, 10_000)
            let uploader = try makeUploader(device)
            let clock = ContinuousClock()
            let started = clock.now
            let summary = await uploader.drainOnce()
            let elapsed = clock.now - started
            #expect(summary.outcome == .drained && summary.accepted == 10_000)
            #expect(try hub.hub.database.recordCount() == 10_000)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let rate = 10_000 / seconds
            print("DRAIN BENCHMARK: 10000 records in \(summary.requests) batches, \(String(format: "%.2f", seconds)) s, \(Int(rate)) records/s"
                  + (rate >= 5_000 ? " (within the 5,000 records/s budget)" : " (BELOW the 5,000 records/s budget)"))
        }
    }
}
