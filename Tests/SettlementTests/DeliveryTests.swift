import KioskProtocol
import Foundation
import GRDB
import KioskCore
import KioskStore
import Testing

@Suite("Store: batch read and batch answers")
struct DeliveryTests {
    @Test("received_at is normalised to UTC seconds, a fraction rounded up")
    func normalise() {
        #expect(ReceivedAt.normalise("2026-11-22T03:00:01Z") == "2026-11-22T03:00:01Z")
        #expect(ReceivedAt.normalise("2026-11-22T03:00:01.000Z") == "2026-11-22T03:00:01Z")
        #expect(ReceivedAt.normalise("2026-11-22T03:00:01.001Z") == "2026-11-22T03:00:02Z")
        #expect(ReceivedAt.normalise("2026-11-22T03:00:01.999999999Z") == "2026-11-22T03:00:02Z")
        #expect(ReceivedAt.normalise("2026-12-31T23:59:59.5Z") == "2027-01-01T00:00:00Z")
        #expect(ReceivedAt.normalise("2026-11-22T11:00:01+08:00") == "2026-11-22T03:00:01Z")
        #expect(ReceivedAt.normalise("2026-11-22T01:00:00.2-02:30") == "2026-11-22T03:30:01Z")
        #expect(ReceivedAt.normalise("2028-02-29T00:00:00z") == "2028-02-29T00:00:00Z")
        for bad in ["", "yesterday", "2026-11-22", "2026-11-22T03:00:01", "2026-11-22T03:00:01.Z", "2026-13-01T00:00:00Z",
                    "2026-02-29T00:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T03:00:01Z ", "2026-11-22T03:00:01+0800"] {
            #expect(ReceivedAt.normalise(bad) == nil, "\(bad)")
        }
    }

    @Test("nextBatch: queued records in seq order, bounded by count and bytes")
    func nextBatchBounds() throws {
        let device = try provisionDevice(hubURL: "http://127.0.0.1:9")
        let records = try queueAlerts(device, 12)
        let all = try device.store.nextBatch(deviceID: device.config.deviceID)
        #expect(all.map(\.recordID) == records.map(\.recordID))
        #expect(all.map(\.seq) == Array(1...12))

        let five = try device.store.nextBatch(deviceID: device.config.deviceID, maxRecords: 5)
        #expect(five.map(\.seq) == [1, 2, 3, 4, 5])

        // Bytes: the bodies joined with commas must fit.
        let sizes = records.map { $0.body.utf8.count }
        let threeFit = sizes[0] + sizes[1] + sizes[2] + 2
        #expect(try device.store.nextBatch(deviceID: device.config.deviceID, maxBytes: threeFit).count == 3)
        #expect(try device.store.nextBatch(deviceID: device.config.deviceID, maxBytes: threeFit - 1).count == 2)
        // A record larger than the budget still comes alone (so the hub can say 413 about it).
        #expect(try device.store.nextBatch(deviceID: device.config.deviceID, maxBytes: 10).count == 1)
        // Another device's queue is not this one's.
        #expect(try device.store.nextBatch(deviceID: "KSK-OTHER").isEmpty)
        #expect(try device.store.queuedCount(deviceID: device.config.deviceID) == 12)
    }

    @Test("applyResults marks many records in one transaction; bodies never change")
    func applyResults() throws {
        let device = try provisionDevice(hubURL: "http://127.0.0.1:9")
        let records = try queueAlerts(device, 4)
        let applied = try device.store.applyResults([
            DeliveryResult(recordID: records[0].recordID, outcome: .accepted(receivedAt: "2026-11-22T03:00:01.250Z")),
            DeliveryResult(recordID: records[1].recordID, outcome: .accepted(receivedAt: "2026-11-22T03:00:01Z")),
            DeliveryResult(recordID: records[2].recordID, outcome: .rejected(reason: "unknown_program")),
        ])
        #expect(applied.accepted == 2 && applied.rejected == 1 && applied.unchanged == 0)
        let after = try device.store.records(limit: 10)
        #expect(after.map(\.status) == [.accepted, .accepted, .rejected, .queued])
        #expect(after[0].receivedAt == "2026-11-22T03:00:02Z")
        #expect(after[1].receivedAt == "2026-11-22T03:00:01Z")
        #expect(after[2].rejectReason == "unknown_program" && after[2].receivedAt == nil)
        #expect(after.map(\.body) == records.map(\.body))

        // Already resolved records are not touched again (another uploader got there first).
        let again = try device.store.applyResults([
            DeliveryResult(recordID: records[0].recordID, outcome: .accepted(receivedAt: "2027-01-01T00:00:00Z")),
        ])
        #expect(again.unchanged == 1)
        #expect(try device.store.record(records[0].recordID)?.receivedAt == "2026-11-22T03:00:02Z")
    }

    @Test("one bad received_at refuses the whole answer: nothing is written")
    func applyResultsAllOrNothing() throws {
        let device = try provisionDevice(hubURL: "http://127.0.0.1:9")
        let records = try queueAlerts(device, 3)
        #expect(throws: DeliveryError.self) {
            try device.store.applyResults([
                DeliveryResult(recordID: records[0].recordID, outcome: .accepted(receivedAt: "2026-11-22T03:00:01Z")),
                DeliveryResult(recordID: records[1].recordID, outcome: .accepted(receivedAt: "soon")),
            ])
        }
        #expect(try device.store.queuedCount() == 3)
    }

    @Test("the schema still refuses edits of a delivered record's body")
    func neverEdited() throws {
        let device = try provisionDevice(hubURL: "http://127.0.0.1:9")
        let r = try queueAlerts(device, 1)[0]
        try device.store.applyResults([DeliveryResult(recordID: r.recordID, outcome: .accepted(receivedAt: "2026-11-22T03:00:01Z"))])
        #expect(throws: (any Error).self) {
            try device.store.pool.write { db in try db.execute(sql: "UPDATE record SET body = '{}' WHERE record_id = ?", arguments: [r.recordID]) }
        }
    }

    @Test("queuedAlertExists finds a waiting alert by code")
    func queuedAlert() throws {
        let device = try provisionDevice(hubURL: "http://127.0.0.1:9")
        #expect(try !device.store.queuedAlertExists(deviceID: device.config.deviceID, code: "printer_fault"))
        let r = try queueAlerts(device, 1)[0]
        #expect(try device.store.queuedAlertExists(deviceID: device.config.deviceID, code: "printer_fault"))
        #expect(try !device.store.queuedAlertExists(deviceID: device.config.deviceID, code: "hub_refused_device"))
        try device.store.applyResults([DeliveryResult(recordID: r.recordID, outcome: .accepted(receivedAt: "2026-11-22T03:00:01Z"))])
        #expect(try !device.store.queuedAlertExists(deviceID: device.config.deviceID, code: "printer_fault"))
    }
}
