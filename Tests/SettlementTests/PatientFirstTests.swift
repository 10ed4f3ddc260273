import Foundation
import KioskCore
import KioskStore
import Settlement
import Testing

/// Issue 24 item 3: while a card is on the reader the uploader holds its next batch (the
/// patient first); a card forgotten there holds nothing for long.
@Suite struct PatientFirstTests {
    /// A hub, a device with `records` alerts queued, a card on the reader holding at most
    /// `longest`, and an uploader that waits on it.
    func withACardOnTheReader(records: Int, longest: Duration,
                              _ body: (HubFixture, Device, PatientPresence, Uploader) async throws -> Void) async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, records)
            let presence = PatientPresence(longest: longest)
            presence.arrived()
            try await body(hub, device, presence, try makeUploader(device, presence: presence))
        }
    }

    @Test("a card on the reader holds the batch: nothing sent until it leaves, then everything once")
    func aCardOnTheReaderHoldsTheBatch() async throws {
        try await withACardOnTheReader(records: 5, longest: .seconds(60)) { hub, device, presence, uploader in
            #expect(presence.serving)
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

    /// No upper bound on time is asserted (a shared machine running every suite at once can
    /// take seconds for a round trip); the bound is the presence's own, and the hold's lower
    /// bound is what the hold guarantees.
    @Test("a card forgotten on the reader holds the uploads no longer than its bound; the next card holds again")
    func aForgottenCardHoldsNothingForLong() async throws {
        try await withACardOnTheReader(records: 3, longest: .milliseconds(300)) { _, device, presence, uploader in
            let clock = ContinuousClock()
            let started = clock.now
            let summary = await uploader.drainOnce()
            #expect(clock.now - started >= .milliseconds(250))
            #expect(summary.accepted == 3 && summary.outcome == .drained)
            #expect(!presence.serving, "past its bound a card holds nothing")
            // A card that left holds nothing at all (with an hour's bound, a wrong hold would show).
            let patient = PatientPresence(longest: .seconds(3600))
            patient.arrived()
            patient.left()
            #expect(!patient.serving)
            // The next card holds again, for its own bound.
            presence.left()
            presence.arrived()
            #expect(presence.serving)
            try queueAlerts(device, 1)
            let again = clock.now
            #expect(await uploader.drainOnce().accepted == 1)
            #expect(clock.now - again >= .milliseconds(250))
        }
    }
}
