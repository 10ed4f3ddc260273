import AsyncHTTPClient
import Foundation
import HubHTTP
import Testing

/// Issue 23 item 4: the hub's `/metrics`.
@Suite struct HubMetricsTests {
    static func metrics(_ hub: HubFixture) async throws -> String {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: hub.url + "/metrics"), timeout: .seconds(10))
        #expect(response.status.code == 200)
        return String(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    @Test("batches by status, records by answer, long polls, publication age and roster change lag")
    func countsWhatHappened() async throws {
        let hub = try await HubFixture.start()
        do {
            let before = try await Self.metrics(hub)
            #expect(before.contains("hub_records_total{answer=\"accepted\"} 0"), "\(before)")
            #expect(before.contains("hub_publication_age_seconds -1") && before.contains("hub_roster_change_lag_seconds 0"), "\(before)")
            _ = try await hub.send([try HubCase.subsidy(seq: 1), HubCase.alert(seq: 2)])
            _ = try await hub.send([HubCase.alert(seq: 2)])                                    // a duplicate
            _ = try await hub.send([HubCase.alert(seq: 9)])                                    // a gap: rejected
            let after = try await Self.metrics(hub)
            #expect(after.contains("hub_batches_total{status=\"200\"} 3"), "\(after)")
            #expect(after.contains("hub_records_total{answer=\"accepted\"} 2"), "\(after)")
            #expect(after.contains("hub_records_total{answer=\"duplicate\"} 1"), "\(after)")
            #expect(after.contains("hub_records_total{answer=\"rejected\"} 1"), "\(after)")
            #expect(after.contains("hub_long_polls 0"), "\(after)")
        } catch {
            await hub.stop()
            throw error
        }
        await hub.stop()
    }
}
