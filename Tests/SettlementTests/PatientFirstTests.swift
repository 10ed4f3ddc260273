import Foundation
import KioskStore
import Settlement
import Testing

/// Issue 24 item 3: while a card is on the reader the uploader holds its next batch (the
/// patient first); a card forgotten there holds nothing for long.
@Suite struct PatientFirstTests {
    @Test("a card on the reader holds the batch: nothing sent until it leaves, then everything once")
    func aCardOnTheReaderHoldsTheBatch() async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 5)
            let presence = PatientPresence(longest: .seconds(60))
            presence.arrived()
            #expect(presence.serving)
            let uploader = try makeUploader(device, presence: presence)
            let drain = Task { await uploader.drainOnce() }
            try await Task.sleep(for: .milliseconds(400))
            #expect(try hub.hub.database.records(deviceID: Fixtures.deviceID).isEmpty, "a batch went while the card was on the reader")
            #expect(try device.store.queuedCount() == 5)
            presence.left()
            let summary = await drain.value
            #expect(summary.accepted == 5 && summary.outcome == .drained)
            #expect(try hub.hub.database.records(deviceID: Fixtures.deviceID).count == 5)
        }
    }

    @Test("a card forgotten on the reader holds the uploads no longer than its bound")
    func aForgottenCardHoldsNothingForLong() async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 3)
            let presence = PatientPresence(longest: .milliseconds(300))
            presence.arrived()
            let uploader = try makeUploader(device, presence: presence)
            let clock = ContinuousClock()
            let started = clock.now
            let summary = await uploader.drainOnce()
            let waited = clock.now - started
            #expect(summary.accepted == 3 && summary.outcome == .drained)
            #expect(waited >= .milliseconds(250) && waited < .seconds(10), "\(waited)")
            #expect(!presence.serving)
            // A card that left holds nothing; the next card holds again, for its own bound.
            presence.left()
            try queueAlerts(device, 1)
            let quick = clock.now
            #expect(await uploader.drainOnce().accepted == 1)
            #expect(clock.now - quick < .milliseconds(250))
            presence.arrived()
            try queueAlerts(device, 1)
            let again = clock.now
            #expect(await uploader.drainOnce().accepted == 1)
            #expect(clock.now - again >= .milliseconds(250))
        }
    }
}
