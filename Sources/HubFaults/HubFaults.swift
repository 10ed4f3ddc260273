import Foundation
import HTTPTypes
import HubHTTP
import HubStore
import Hummingbird

/// Test knobs: ways for the reference hub to misbehave on purpose (test support: linked by the
/// tests, never by a release program).
public struct HubFaults: Sendable, Equatable, BatchFaultHook {
    /// What the first `failFirst` batch requests get instead of a normal answer.
    public enum Failure: Sendable, Equatable {
        /// This status (with `Retry-After: retryAfter` seconds if given), nothing stored.
        case status(Int, retryAfter: Int?)
        /// The batch is stored, then this status is answered: the answer is "lost".
        case storeThenStatus(Int)
        /// The batch is stored, then a 200 that does not answer it.
        case nonsense(Nonsense)
    }

    /// How a nonsense 200 breaks the results, each a way the kiosk's checks must catch (upload spec §3);
    /// the raw value is `settlement-hub --nonsense`'s word.
    public enum Nonsense: String, Sendable, Equatable, CaseIterable {
        /// One result fewer than records.
        case wrongCount = "wrong-count"
        /// The results' record ids reversed / changed.
        case wrongIDs = "wrong-ids"
        /// Not JSON at all.
        case notJSON = "not-json"
        /// A status the spec does not know.
        case unknownStatus = "unknown-status"
        /// `received_at` that is not a time.
        case badTime = "bad-time"
    }

    /// Batch requests numbered 1 to `failFirst`, counted from the hub's start (`batchRequests`), get `failure`.
    public var failFirst = 0
    /// What those requests get: by default a 503 without `Retry-After`.
    public var failure: Failure = .status(503, retryAfter: nil)
    /// Wait this long after storing a batch, before answering (a slow hub).
    public var delay: Duration = .zero
    /// Answer `received_at` with milliseconds (to exercise the kiosk's rounding up).
    public var fractionalReceivedAt = false

    /// No fault unless one is given.
    public init(failFirst: Int = 0, failure: Failure = .status(503, retryAfter: nil), delay: Duration = .zero,
                fractionalReceivedAt: Bool = false) {
        self.failFirst = failFirst
        self.failure = failure
        self.delay = delay
        self.fractionalReceivedAt = fractionalReceivedAt
    }

    /// No faults: the hub answers as the spec says.
    public static let none = HubFaults()
}

extension HubFaults {
    /// A `status` failure for requests 1 to `failFirst`: answered before anything is stored.
    package func beforeStoring(request number: Int) -> Response? {
        guard number <= failFirst, case .status(let status, let retryAfter) = failure else { return nil }
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = "\(retryAfter)" }
        let body = (try? JSONSerialization.data(withJSONObject: ["error": "injected", "message": "test fault \(status)"], options: [.sortedKeys])) ?? Data()
        return Response(status: HTTPResponse.Status(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// After `delay`: the answer lost (`storeThenStatus`), broken (`nonsense`) or as it is.
    package func afterStoring(request number: Int, answer: Response, results: [RecordResult]) async -> Response {
        if delay > .zero { try? await Task.sleep(for: delay) }
        guard number <= failFirst else { return answer }
        switch failure {
        case .storeThenStatus(let status):
            let body = (try? JSONSerialization.data(withJSONObject: ["error": "injected", "message": "test fault: stored, answer lost"], options: [.sortedKeys])) ?? Data()
            return Response(status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
        case .nonsense(let kind):
            return Self.nonsense(kind, results)
        case .status:
            return answer
        }
    }

    /// A 200 that does not answer the batch (a test fault): the results broken the way `kind` says.
    static func nonsense(_ kind: Nonsense, _ results: [RecordResult]) -> Response {
        var results = results
        let body: [UInt8]
        switch kind {
        case .wrongCount:
            if !results.isEmpty { results.removeLast() }
            body = SettlementHub.resultsJSON(results)
        case .wrongIDs:
            results = results.map { var r = $0; r.recordID = ($0.recordID ?? "") + "x"; return r }.reversed()
            body = SettlementHub.resultsJSON(results)
        case .notJSON:
            body = Array("<html><body>Gateway says hello</body></html>".utf8)
        case .unknownStatus:
            body = Array(String(decoding: SettlementHub.resultsJSON(results), as: UTF8.self)
                .replacingOccurrences(of: #""status":"accepted""#, with: #""status":"stored""#)
                .replacingOccurrences(of: #""status":"duplicate""#, with: #""status":"stored""#).utf8)
        case .badTime:
            results = results.map { r in
                var r = r
                switch r.status {
                case .accepted, .duplicate: r.status = .accepted(receivedAt: "yesterday", flags: [])
                case .rejected: break
                }
                return r
            }
            body = SettlementHub.resultsJSON(results)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
