import Foundation
import HubStore
import Hummingbird
import KioskProtocol
import Synchronization

/// The hub's own counters for `GET /metrics` (issue 23 item 4), in Prometheus' text format:
/// batches by HTTP status, records by answer, long polls held now, how old the newest
/// publication is and how long the oldest roster change has waited for the publisher.
/// Kept by each hub (no process-wide metrics system: several hubs run in one test process).
package final class HubMetrics: Sendable {
    struct Counts: Sendable {
        var batches: [Int: Int] = [:]
        var records: [String: Int] = [:]
    }
    let counts = Mutex(Counts())

    /// A batch request answered with `status`.
    func batch(status: Int) { counts.withLock { $0.batches[status, default: 0] += 1 } }

    /// Records answered, by their answer.
    func records(_ results: [RecordResult]) {
        counts.withLock { c in
            for r in results {
                switch r.status {
                case .accepted: c.records["accepted", default: 0] += 1
                case .duplicate: c.records["duplicate", default: 0] += 1
                case .rejected: c.records["rejected", default: 0] += 1
                }
            }
        }
    }

    /// The exposition: the counters, and the gauges given.
    func text(longPolls: Int, publicationAge: Double?, rosterInboxAge: Double?) -> String {
        let c = counts.withLock { $0 }
        var out = "# HELP hub_batches_total Batch requests answered, by HTTP status.\n# TYPE hub_batches_total counter\n"
        for status in c.batches.keys.sorted() { out += "hub_batches_total{status=\"\(status)\"} \(c.batches[status] ?? 0)\n" }
        out += "# HELP hub_records_total Records answered, by answer.\n# TYPE hub_records_total counter\n"
        for answer in ["accepted", "duplicate", "rejected"] { out += "hub_records_total{answer=\"\(answer)\"} \(c.records[answer] ?? 0)\n" }
        out += "# HELP hub_long_polls Sync long polls held now.\n# TYPE hub_long_polls gauge\nhub_long_polls \(longPolls)\n"
        out += "# HELP hub_publication_age_seconds Seconds since the newest snapshot was published (-1: none yet).\n"
        out += "# TYPE hub_publication_age_seconds gauge\nhub_publication_age_seconds \(Int(publicationAge ?? -1))\n"
        out += "# HELP hub_roster_change_lag_seconds Seconds the oldest roster change has waited for the publisher (0: none waits).\n"
        out += "# TYPE hub_roster_change_lag_seconds gauge\nhub_roster_change_lag_seconds \(Int(rosterInboxAge ?? 0))\n"
        return out
    }
}

extension SettlementHub {
    /// `GET /metrics`: the exposition, its gauges read off the request task.
    func metricsResponse() async -> Response {
        let instant = now()
        // Both ages in one read, off the request task; stored times are the hub's own RFC 3339.
        let ages = await BlockingWork.offload { () -> (Double?, Double?) in
            let times = try? self.database.engine.read { c in
                (try c.text("SELECT MAX(published_at) FROM hub_snapshot"), try c.text("SELECT MIN(received_at) FROM roster_inbox"))
            }
            func age(_ text: String??) -> Double? { (text ?? nil).flatMap(Timestamp.date).map { instant.timeIntervalSince($0) } }
            return (age(times?.0), age(times?.1))
        }
        let text = metrics.text(longPolls: deviceLimiter.longPollCount(), publicationAge: ages.0, rosterInboxAge: ages.1)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Counts every batch request's answer, thrown or returned.
    struct BatchCounter: RouterMiddleware {
        let metrics: HubMetrics

        func handle(_ request: Request, context: HubRequestContext,
                    next: (Request, HubRequestContext) async throws -> Response) async throws -> Response {
            do {
                let response = try await next(request, context)
                metrics.batch(status: response.status.code)
                return response
            } catch let e as HTTPResponseError {
                metrics.batch(status: e.status.code)
                throw e
            }
        }
    }
}
