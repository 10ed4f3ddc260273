import KioskProtocol
import AsyncHTTPClient
import Crypto
import Dispatch
import Foundation
import Synchronization
import KioskStore
import Logging
import Metrics
import NIOCore
import NIOSSL

/// How the uploader talks to the hub and how long it waits.
public struct UploaderConfiguration: Sendable {
    /// The hub's base URL from provisioning, e.g. `https://hub.example.cn` (a trailing `/` is ignored);
    /// checked by `HubURL.check` when the configuration is made (`https`, or `http` on loopback only).
    public private(set) var hubURL: String
    /// Whole-request bound: connect, send, and the hub's answer (default 30 s).
    public var requestTimeout: Duration = .seconds(30)
    /// Upload spec §2 limits: at most 500 records and 1 MiB per batch.
    public var maxRecords = KioskStore.maxBatchRecords
    /// At most this many bytes per batch body, envelope included.
    public var maxBytes = KioskStore.maxBatchBytes
    /// 5xx, connection refused, timeout, TLS, 400, nonsense: from 1 s to at most 5 minutes.
    public var backoff = Backoff()
    /// 401/403 (bad signature, unknown device): retry slowly.
    public var refusedRetryDelay: Duration = .seconds(300)
    /// Longest `Retry-After` obeyed (a longer one is cut to this).
    public var maxRetryAfter: Duration = .seconds(3600)
    /// `run()` with an empty queue looks again after this long even if nobody calls `notify()`
    /// (records queued by another process, such as `kioskctl`). Not a busy poll.
    public var idleRecheck: Duration = .seconds(60)
    /// Most batches sent by one `drainOnce()` before it hands back (a bound on the loop).
    public var maxBatchesPerDrain = 1000
    /// Largest answer body read from the hub.
    public var maxAnswerBytes = 4 << 20
    /// The `alert` code raised (once per streak) when the hub refuses the device (401/403).
    public var refusedAlertCode = "hub_refused_device"

    /// Throws `HubURLError` for a URL the kiosk must not use (upload spec §2): not a URL, not
    /// `https`, or plain `http` to a host that is not loopback.
    public init(hubURL: String) throws(HubURLError) {
        _ = try HubURL.check(hubURL)
        self.hubURL = hubURL
    }

    /// `{hub}/v1/devices/{device_id}/batches`.
    public func batchesURL(deviceID: String) -> String {
        var base = hubURL
        while base.hasSuffix("/") { base.removeLast() }
        let id = deviceID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? deviceID
        return "\(base)/v1/devices/\(id)/batches"
    }
}

/// The clock, the waits and the randomness, injectable so that tests replay minutes of
/// backoff at once and a failing run can be replayed.
public struct UploaderEnvironment: Sendable {
    /// The clock: `sent_at`, a sync request's `X-Date`, a `Retry-After` given as a date.
    public var now: @Sendable () -> Date
    /// Waits between attempts (backoff, `Retry-After`, idle recheck). Must throw or return
    /// early when the task is cancelled.
    public var sleep: @Sendable (Duration) async throws -> Void
    /// Uniform in [0, 1): the backoff jitter.
    public var random: @Sendable () -> Double
    /// A fresh `batch_id` (a UUID).
    public var makeBatchID: @Sendable () -> String
    /// Waited for before each batch is built (kioskd: `PatientPresence.waitWhileServing`,
    /// issue 24 item 3); by default, nothing.
    public var beforeBatch: @Sendable () async -> Void = {}

    /// An environment as given (tests inject their own).
    public init(now: @escaping @Sendable () -> Date, sleep: @escaping @Sendable (Duration) async throws -> Void,
                random: @escaping @Sendable () -> Double, makeBatchID: @escaping @Sendable () -> String) {
        self.now = now
        self.sleep = sleep
        self.random = random
        self.makeBatchID = makeBatchID
    }

    /// The system clock, `Task.sleep`, the system's random numbers and UUIDs.
    public static let live = UploaderEnvironment(
        now: { Date() },
        sleep: { try await Task.sleep(for: $0) },
        random: { Double.random(in: 0..<1) },
        makeBatchID: { UUID().uuidString.lowercased() }
    )
}

/// Why a batch did not count as delivered (upload spec §3, "other answers"). Nothing of
/// the batch is marked then; it is sent again later.
public enum UploadFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Connection refused, reset, name not found, TLS failure.
    case unreachable(String)
    /// No complete answer within the request timeout.
    case timedOut
    /// 500, 502, 504, … (and 503 without `Retry-After`, see `throttled`).
    case serverError(status: Int)
    /// 429 or 503; `retryAfter` when the hub said how long.
    case throttled(status: Int, retryAfter: Duration?)
    /// 400: the hub calls the batch malformed. A kiosk bug to report; the message is the hub's.
    case badRequest(message: String)
    /// 401/403: bad signature or unknown device.
    case refused(status: Int, message: String)
    /// 413 for a batch of a single record: that record is kept and tried again later.
    case recordTooLarge(recordID: String)
    /// A 200 that does not answer the batch.
    case nonsense(BatchAnswer.Nonsense)
    /// A status the spec does not name (3xx, 404, …).
    case unexpectedStatus(Int, message: String)
    /// The uploader's task was cancelled (shutdown) mid-batch: nothing marked, sent again next time.
    case cancelled
    /// The kiosk's own database failed (full disk, …): nothing was marked.
    case store(String)

    /// The failure in one line.
    public var description: String {
        switch self {
        case .unreachable(let why): return "the hub could not be reached: \(why)"
        case .timedOut: return "the hub did not answer in time"
        case .serverError(let s): return "the hub failed (HTTP \(s))"
        case .throttled(let s, let after): return "the hub is busy (HTTP \(s))" + (after.map { ", retry after \($0.seconds) s" } ?? "")
        case .badRequest(let m): return "the hub calls the batch malformed (HTTP 400): \(m)"
        case .refused(let s, let m): return "the hub refused this device (HTTP \(s)): \(m)"
        case .recordTooLarge(let id): return "the hub refuses record \(id) as too large (HTTP 413)"
        case .nonsense(let n): return "the hub answered nonsense: \(n)"
        case .unexpectedStatus(let s, let m): return "the hub answered HTTP \(s): \(m)"
        case .store(let m): return "the kiosk store failed: \(m)"
        case .cancelled: return "the upload was cancelled"
        }
    }

    /// A short name for metrics and logs.
    public var code: String {
        switch self {
        case .unreachable: return "unreachable"
        case .timedOut: return "timeout"
        case .serverError: return "server_error"
        case .throttled: return "throttled"
        case .badRequest: return "bad_request"
        case .refused: return "refused"
        case .recordTooLarge: return "too_large"
        case .nonsense: return "nonsense"
        case .unexpectedStatus: return "unexpected_status"
        case .store: return "store"
        case .cancelled: return "cancelled"
        }
    }
}

/// A record the hub will never take (it stays on the kiosk, marked rejected).
public struct RejectedRecord: Sendable, Equatable {
    /// The record refused.
    public var recordID: String
    /// The hub's reason (upload spec §5: `seq_gap`, `bad_amounts`, …).
    public var reason: String
}

/// What one `drainOnce()` did.
public struct DrainSummary: Sendable, Equatable {
    /// How the drain ended.
    public enum Outcome: Sendable, Equatable {
        /// The queue is empty.
        case drained
        /// Records remain and may be sent at once (`maxBatchesPerDrain` reached).
        case more
        /// Stopped by `failure`; try again after `after`.
        case retry(after: Duration, failure: UploadFailure)
    }

    /// HTTP requests made.
    public var requests = 0
    /// Records newly marked accepted (duplicates included).
    public var accepted = 0
    /// Of those, how many the hub had already (`duplicate`).
    public var duplicates = 0
    /// Records newly marked rejected, with the hub's reasons.
    public var rejected: [RejectedRecord] = []
    /// Batches halved after a 413.
    public var splits = 0
    /// Records still queued when the drain ended.
    public var queued = 0
    /// How the drain ended.
    public var outcome: Outcome = .drained

    /// Nothing done yet.
    public init() {}

    /// The failure that stopped the drain, or nil.
    public var failure: UploadFailure? {
        if case .retry(_, let f) = outcome { return f }
        return nil
    }

    /// How long to wait before the next drain when it stopped on a failure, or nil.
    public var retryAfter: Duration? {
        if case .retry(let d, _) = outcome { return d }
        return nil
    }
}

/// Drains the kiosk's settlement queue to the hub (upload spec §2–3).
///
/// One batch at a time, records in `seq` order, each batch signed over its exact bytes.
/// A record is marked only by a believable `200`; everything else keeps the whole batch
/// and says how long to wait. `drainOnce()` calls are serialised; `run()` loops until its
/// task is cancelled, woken early by `notify()`.
public actor Uploader {
    /// The hub and its bounds.
    public nonisolated let configuration: UploaderConfiguration
    /// The device whose queued records are sent.
    public nonisolated let device: DeviceContext
    let store: KioskStore
    let signingKey: Curve25519.Signing.PrivateKey
    let client: HTTPClient
    let environment: UploaderEnvironment
    let logger: Logger
    let metrics: UploaderMetrics
    let endpoint: String
    private nonisolated let wake = WakeSignal()

    /// Consecutive failed attempts (the backoff exponent); 0 after a believable answer.
    public private(set) var failureStreak = 0
    /// The last `drainOnce()` summary (for a status screen): nil before the first.
    public private(set) var lastDrain: DrainSummary?
    /// Whether this 401/403 streak has raised its alert.
    private var refusedAlertRaised = false
    private var draining = false
    private var drainWaiters: [CheckedContinuation<Void, Never>] = []

    /// - Parameters:
    ///   - httpClient: defaults to `Uploader.sharedHTTPClient`; pass your own for a provisioned
    ///     CA (built from `Uploader.httpClientConfiguration()`; shut it down yourself). The
    ///     uploader never shuts a client down.
    ///   - metricsFactory: defaults to the bootstrapped `MetricsSystem.factory`.
    public init(store: KioskStore, device: DeviceContext, signingKey: Curve25519.Signing.PrivateKey,
                configuration: UploaderConfiguration, httpClient: HTTPClient = Uploader.sharedHTTPClient,
                environment: UploaderEnvironment = .live, logger: Logger = Logger(label: "settlement.uploader"),
                metricsFactory: MetricsFactory? = nil) {
        precondition(configuration.maxRecords > 0 && configuration.maxRecords <= KioskStore.maxBatchRecords, "1…500 records per batch")
        precondition(configuration.maxBytes > 256 && configuration.maxBytes <= KioskStore.maxBatchBytes, "at most 1 MiB per batch")
        self.store = store
        self.device = device
        self.signingKey = signingKey
        self.configuration = configuration
        self.client = httpClient
        self.environment = environment
        var logger = logger
        logger[metadataKey: "device_id"] = "\(device.deviceID)"
        self.logger = logger
        self.metrics = UploaderMetrics(factory: metricsFactory ?? MetricsSystem.factory)
        self.endpoint = configuration.batchesURL(deviceID: device.deviceID)
    }

    /// A record was queued: `run()` drains now instead of at its next recheck. Callable from
    /// any thread; cheap; never waits. (Does not cut a backoff short.)
    public nonisolated func notify() {
        wake.signal()
    }

    /// Sends batches until the queue is empty or an answer says to wait.
    public func drainOnce() async -> DrainSummary {
        while draining {
            await withCheckedContinuation { drainWaiters.append($0) }
        }
        draining = true
        defer {
            draining = false
            if !drainWaiters.isEmpty { drainWaiters.removeFirst().resume() }
        }
        let summary = await drain()
        lastDrain = summary
        return summary
    }

    /// Drains, waits as told, drains again, … until the task is cancelled. With an empty
    /// queue it sleeps until `notify()` or `idleRecheck`; after a failure it waits out the
    /// backoff (a new record does not cut it short, so a down hub is not hammered).
    public func run() async {
        logger.info("uploader started", metadata: ["hub": "\(endpoint)"])
        while !Task.isCancelled {
            let summary = await drainOnce()
            switch summary.outcome {
            case .more:
                continue
            case .drained:
                await waitForWake(upTo: configuration.idleRecheck)
            case .retry(let after, _):
                wake.clear()
                do { try await environment.sleep(after) } catch { break }
            }
        }
        logger.info("uploader stopped")
    }

    private func waitForWake(upTo limit: Duration) async {
        let wake = self.wake
        let sleep = environment.sleep
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await wake.wait() }
            group.addTask { try? await sleep(limit) }
            await group.next()
            group.cancelAll()
        }
    }

    // MARK: the drain

    private func drain() async -> DrainSummary {
        var summary = DrainSummary()
        var limit = configuration.maxRecords
        var batches = 0
        loop: while true {
            if batches >= configuration.maxBatchesPerDrain {
                summary.outcome = .more
                break
            }
            await environment.beforeBatch()
            let batchID = environment.makeBatchID()
            let sentAt = Timestamp.string(environment.now())
            let budget = configuration.maxBytes - BatchBody.envelopeLength(batchID: batchID, deviceID: device.deviceID, sentAt: sentAt)
            let records: [StoredRecord]
            do {
                // One record and 64 KiB more than the batch holds: enough to see whether its last bill goes on.
                let (deviceID, maxRecords) = (device.deviceID, limit)
                let fetched = try await onStoreThread {
                    try $0.nextBatch(deviceID: deviceID, maxRecords: maxRecords + 1, maxBytes: budget + BillBoundary.lookahead)
                }
                records = BillBoundary.batch(fetched, maxRecords: limit, maxBytes: budget)
            } catch {
                summary.outcome = await fail(.store("\(StoreError(error))"), batchID: batchID, records: [])
                break
            }
            if records.isEmpty {
                summary.outcome = .drained
                break
            }
            batches += 1
            summary.requests += 1
            let body = BatchBody(batchID: batchID, deviceID: device.deviceID, sentAt: sentAt, records: records)
            let answer = await send(body)
            if Task.isCancelled {
                // Shutting down: whatever the hub did, nothing is marked; the batch goes again next time.
                summary.outcome = .retry(after: .zero, failure: .cancelled)
                break
            }
            switch answer {
            case .failure(let failure):
                summary.outcome = await fail(failure, batchID: batchID, records: records)
                break loop
            case .success(let reply):
                let (status, data) = (reply.status, reply.body)
                switch status {
                case 200:
                    do {
                        try await settle(body, answer: data, into: &summary)
                    } catch {
                        summary.outcome = await fail(error, batchID: batchID, records: records)
                        break loop
                    }
                case 413 where records.count > 1:
                    limit = max(1, records.count / 2)
                    summary.splits += 1
                    logger.notice("hub says the batch is too large; splitting", metadata: [
                        "batch_id": "\(batchID)", "records": "\(records.count)", "next_records": "\(limit)"])
                default:
                    summary.outcome = await fail(uploadFailure(for: reply, records: records), batchID: batchID, records: records)
                    break loop
                }
            }
        }
        let deviceID = device.deviceID
        if let queued = try? await onStoreThread({ try $0.queuedCount(deviceID: deviceID) }) {
            summary.queued = queued
            metrics.queueLength.record(queued)
        }
        return summary
    }

    /// What an answer other than a 200 or a 413 to split on means (upload spec §3, "other answers").
    private func uploadFailure(for reply: Reply, records: [StoredRecord]) -> UploadFailure {
        let (status, data) = (reply.status, reply.body)
        switch status {
        case 413:
            return .recordTooLarge(recordID: records[0].recordID)
        case 400:
            return .badRequest(message: Self.message(data))
        case 401, 403:
            return .refused(status: status, message: Self.message(data))
        case 429, 503:
            let after = RetryAfter.parse(reply.retryAfter, now: environment.now(), cap: configuration.maxRetryAfter)
            return .throttled(status: status, retryAfter: after)
        case 500...599:
            return .serverError(status: status)
        default:
            return .unexpectedStatus(status, message: Self.message(data))
        }
    }

    /// A believable 200: every result applied in one transaction.
    private func settle(_ body: BatchBody, answer: [UInt8], into summary: inout DrainSummary) async throws(UploadFailure) {
        let checked: BatchAnswer.Checked
        do { checked = try BatchAnswer.check(answer, recordIDs: body.recordIDs) } catch { throw .nonsense(error) }
        do {
            let results = checked.results
            _ = try await onStoreThread { try $0.applyResults(results) }
        } catch {
            throw .store("\(StoreError(error))")
        }
        failureStreak = 0
        refusedAlertRaised = false
        var accepted = 0
        for r in checked.results {
            switch r.outcome {
            case .accepted: accepted += 1
            case .rejected(let reason):
                summary.rejected.append(RejectedRecord(recordID: r.recordID, reason: reason))
                metrics.recordsRejected.increment()
                logger.error("the hub rejected a settlement record; it is kept, marked rejected", metadata: [
                    "record_id": "\(r.recordID)", "reason": "\(reason)", "batch_id": "\(body.batchID)"])
            }
        }
        summary.accepted += accepted
        summary.duplicates += checked.duplicates
        metrics.recordsAccepted.increment(by: Int64(accepted))
        metrics.batchesAccepted.increment()
        logger.debug("batch delivered", metadata: [
            "batch_id": "\(body.batchID)", "records": "\(body.recordIDs.count)", "accepted": "\(accepted)",
            "duplicates": "\(checked.duplicates)", "rejected": "\(body.recordIDs.count - accepted)"])
    }

    /// Records the failure and says how long to wait.
    private func fail(_ failure: UploadFailure, batchID: String, records: [StoredRecord]) async -> DrainSummary.Outcome {
        failureStreak += 1
        metrics.batchesFailed(failure.code).increment()
        let delay: Duration
        switch failure {
        case .throttled(_, let after?):
            delay = after
        case .refused:
            delay = configuration.refusedRetryDelay
        default:
            delay = configuration.backoff.delay(failures: failureStreak, random: environment.random())
        }
        var metadata: Logger.Metadata = [
            "batch_id": "\(batchID)", "failure": "\(failure.code)", "retry_in_s": "\(delay.seconds)", "streak": "\(failureStreak)"]
        if let first = records.first, let last = records.last {
            metadata["records"] = "\(records.count)"
            metadata["first_record_id"] = "\(first.recordID)"
            metadata["last_record_id"] = "\(last.recordID)"
        }
        switch failure {
        case .badRequest, .nonsense, .recordTooLarge, .store, .refused:
            logger.error("upload failed: \(failure)", metadata: metadata)
        default:
            logger.warning("upload failed: \(failure)", metadata: metadata)
        }
        if case .refused(let status, let message) = failure { await raiseRefusedAlert(status: status, message: message) }
        return .retry(after: delay, failure: failure)
    }

    /// Upload spec §3, 401/403: alert, once per streak (and not again while one waits in the queue).
    private func raiseRefusedAlert(status: Int, message: String) async {
        guard !refusedAlertRaised else { return }
        let device = self.device
        let code = configuration.refusedAlertCode
        let detail = String(("settlement hub refused this device (HTTP \(status))" + (message.isEmpty ? "" : ": \(message)")).prefix(500))
        let now = environment.now()
        do {
            let raised = try await onStoreThread { store -> StoredRecord? in
                guard try !store.queuedAlertExists(deviceID: device.deviceID, code: code) else { return nil }
                return try store.recordAlert(device: device, code: code, cardNumber: nil, detail: detail, now: now)
            }
            if let r = raised {
                logger.critical("hub refuses this device; alert raised", metadata: ["record_id": "\(r.recordID)", "status": "\(status)"])
            }
            refusedAlertRaised = true
        } catch {
            logger.error("could not record the alert", metadata: ["error": "\(StoreError(error))"])
        }
    }

    /// Runs a store call on a dispatch thread: SQLite with `synchronous = FULL` waits for the
    /// disk, and the concurrency pool's few threads (two on the kiosk) must not wait with it.
    private func onStoreThread<T: Sendable>(_ body: @escaping @Sendable (KioskStore) throws -> T) async throws -> T {
        let store = self.store
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .utility).async { continuation.resume(with: Result { try body(store) }) }
        }
    }
}

/// Upload spec §5: the hub checks that the programs of one bill add up to the bill, so the
/// records of one bill (one card write: the same `bill_reference`, card and `card_sequence`,
/// queued together with consecutive `seq`s) always travel in one batch.
enum BillBoundary {
    /// How far past the byte budget the store is asked to read: a `medical_subsidy` record is
    /// far smaller, so a bill that goes on past the budget is always seen.
    static let lookahead = 64 << 10

    /// The batch out of `fetched` (the next queued records, read up to one record and
    /// `lookahead` bytes past the limits): at most `maxRecords` records whose bodies joined
    /// with commas take at most `maxBytes` (the first record always), without the trailing
    /// records of a bill that goes on past the batch, unless that bill is the whole batch.
    static func batch(_ fetched: [StoredRecord], maxRecords: Int, maxBytes: Int) -> [StoredRecord] {
        var batch: [StoredRecord] = []
        var bytes = 0
        var next: StoredRecord?
        for r in fetched {
            let added = r.body.utf8.count + (batch.isEmpty ? 0 : 1)
            if batch.count == maxRecords || (!batch.isEmpty && bytes + added > maxBytes) { next = r; break }
            bytes += added
            batch.append(r)
        }
        guard let next, let last = batch.last, let bill = key(last), key(next) == bill else { return batch }
        var trimmed = batch
        while let r = trimmed.last, key(r) == bill { trimmed.removeLast() }
        return trimmed.isEmpty ? batch : trimmed
    }

    struct Key: Equatable {
        var billReference: String
        var cardNumber: String
        var cardSequence: Int64
    }

    /// The bill a `medical_subsidy` record belongs to; nil for other kinds.
    static func key(_ r: StoredRecord) -> Key? {
        guard r.kind == .medicalSubsidy, let m = (try? r.record())?.medicalSubsidy else { return nil }
        return Key(billReference: m.billReference, cardNumber: m.cardNumber, cardSequence: m.cardSequence)
    }
}

/// The uploader's metrics (swift-metrics; exported by whatever backend the daemon bootstraps).
struct UploaderMetrics: Sendable {
    let recordsAccepted: Counter
    let recordsRejected: Counter
    let batchesAccepted: Counter
    let queueLength: Gauge
    private let failed: [String: Counter]
    private let factory: MetricsFactory

    init(factory: MetricsFactory) {
        self.factory = factory
        recordsAccepted = Counter(label: "settlement_records_accepted_total", dimensions: [], factory: factory)
        recordsRejected = Counter(label: "settlement_records_rejected_total", dimensions: [], factory: factory)
        batchesAccepted = Counter(label: "settlement_batches_accepted_total", dimensions: [], factory: factory)
        queueLength = Gauge(label: "settlement_queue_length", dimensions: [], factory: factory)
        var failed: [String: Counter] = [:]
        for code in ["unreachable", "timeout", "server_error", "throttled", "bad_request", "refused", "too_large", "nonsense",
                     "unexpected_status", "store"] {
            failed[code] = Counter(label: "settlement_batches_failed_total", dimensions: [("reason", code)], factory: factory)
        }
        self.failed = failed
    }

    func batchesFailed(_ code: String) -> Counter {
        failed[code] ?? Counter(label: "settlement_batches_failed_total", dimensions: [("reason", code)], factory: factory)
    }
}
