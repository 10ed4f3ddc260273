import Crypto
import KioskProtocol
import Foundation
import HubRules
import HubStore
import Synchronization
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOCore

/// The hub's limits (upload spec §2) — lowered in tests to make it answer 413.
public struct HubLimits: Sendable, Equatable {
    /// Most records a batch may carry (upload spec §2: 500); beyond: 413 `too_many_records`.
    public var maxRecords = 500
    /// Largest batch body in bytes (upload spec §2: 1 MiB); beyond: 413 `too_large`, at once when
    /// `Content-Length` says so.
    public var maxBytes = 1 << 20
    /// Batch requests a device may make a second (issue 21 item 3); beyond: 429, Retry-After.
    public var batchesPerSecond = 10
    /// Long polls a device may hold at once (issue 21 item 3); beyond: 429, Retry-After.
    public var longPollsPerDevice = 2
    /// Each limit defaults to its figure in upload spec §2 or issue 21 item 3 (`settlement-hub`
    /// sets the first two from `--max-records` and `--max-bytes`).
    public init(maxRecords: Int = 500, maxBytes: Int = 1 << 20, batchesPerSecond: Int = 10, longPollsPerDevice: Int = 2) {
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.batchesPerSecond = batchesPerSecond
        self.longPollsPerDevice = longPollsPerDevice
    }
}

/// A test's hook into the batch endpoint: ways for the reference hub to misbehave on purpose.
/// The knobs themselves (`HubFaults`) live in the test-support module `HubFaults`, which the
/// release programs do not link; in production the hook is nil.
package protocol BatchFaultHook: Sendable {
    /// The answer to batch request `number` (counted from the hub's start) instead of
    /// storing it; nil: store it as usual.
    func beforeStoring(request number: Int) -> Response?
    /// Whether `received_at` is written with milliseconds (the kiosk rounds them up).
    var fractionalReceivedAt: Bool { get }
    /// The answer to batch request `number` once stored: `answer` (the results) or another.
    func afterStoring(request number: Int, answer: Response, results: [RecordResult]) async -> Response
}


/// The reference settlement hub (upload spec v2 §2–3, §5): `POST /v1/devices/{device_id}/batches`
/// checks who sends (a registered, active device's signature over the exact body; every
/// `record_id` of that device), then each record in order: idempotence, sequence, content
/// against the roster (amounts, program, card, the card's acknowledgement, institution,
/// reversal, bill), and flags; stores each accepted record once by `record_id` with its exact
/// JSON and hash, and answers per record; `GET /v1/health`.
public final class SettlementHub: Sendable {
    /// Where answers, records and refusals are stored, and the roster and the shelf are read.
    public let database: HubDatabase
    let logger: Logger
    let now: @Sendable () -> Date
    private let state: LockedState
    let watch: PublicationWatch
    /// The civil-affairs office's roster keys: a roster change posted to the hub must verify with one.
    public let rosterKeys: RosterKeys
    /// The day kiosks that sign legal-aid applications were rolled out (upload spec §5 step 4,
    /// amendment 2026-12-06): an application without the card's consent made before it is
    /// accepted with the flag `no_card_auth`; after it, or with no consent start, `bad_card_auth`.
    public let consentStart: Date?
    /// Every connection of this hub process, counted and bounded (issue 21 item 3).
    public let connections: ConnectionRegistry
    let deviceLimiter = DeviceLimiter()
    /// The hub's counters for `GET /metrics`.
    let metrics = HubMetrics()
    /// Roster changes being received now (at most two).
    let rosterUploads = Atomic<Int>(0)
    /// The roster as this process sees it: programs whole, devices and cards looked up in the
    /// database with a bounded cache (issue 21 item 5).
    let view: RosterView

    /// The hub's mutable settings and counters, behind a `Mutex` (checked `Sendable`).
    final class LockedState: Sendable {
        struct Fields: Sendable {
            var limits: HubLimits
            var faults: (any BatchFaultHook)?
            var batchRequests = 0
        }
        private let fields: Mutex<Fields>
        init(limits: HubLimits, faults: (any BatchFaultHook)?) {
            fields = Mutex(Fields(limits: limits, faults: faults))
        }
        func with<T: Sendable>(_ body: (inout Fields) -> T) -> T {
            fields.withLock { body(&$0) }
        }
    }

    /// - Parameters:
    ///   - now: the hub's clock: `received_at` and the `time_suspect` flag (injectable for tests).
    ///   - publicationPoll: how often a waiting long poll re-reads the publication mark (nil:
    ///     0.5 s on SQLite, 5 s on PostgreSQL, where LISTEN/NOTIFY wakes it at once).
    package init(database: HubDatabase, roster: Roster, limits: HubLimits = HubLimits(), faults: (any BatchFaultHook)? = nil,
                now: @escaping @Sendable () -> Date = { Date() }, logger: Logger = Logger(label: "settlement.hub"),
                rosterKeys: RosterKeys = [:], publicationPoll: Duration? = nil, consentStart: Date? = nil,
                connectionLimits: ConnectionLimits = ConnectionLimits()) {
        self.rosterKeys = rosterKeys
        connections = ConnectionRegistry(limits: connectionLimits)
        self.consentStart = consentStart
        self.database = database
        self.logger = logger
        self.now = now
        state = LockedState(limits: limits, faults: faults)
        view = RosterView(database: database, base: roster)
        watch = PublicationWatch(database: database, pollEvery: publicationPoll)
        // The stored roster is read before the hub serves anything: a batch checked against
        // the start roster alone would find the region's cards unknown.
        refreshRoster(force: true)
    }

    /// Graceful shutdown has begun: held long polls answer `304` at once (the kiosks ask
    /// again elsewhere or later) instead of keeping the hub up for minutes.
    public func beginShutdown() { watch.close() }

    // MARK: knobs, changeable while running

    /// The test faults in force (nil in production); changeable while the hub runs (the next
    /// batch request sees them).
    package var faults: (any BatchFaultHook)? {
        get { state.with { $0.faults } }
        set { state.with { $0.faults = newValue } }
    }

    /// The limits in force; changeable while the hub runs.
    public var limits: HubLimits {
        get { state.with { $0.limits } }
        set { state.with { $0.limits = newValue } }
    }

    /// The whole roster: the start roster (files, options) with every stored entry on top.
    /// Read whole from the database: for tests and tools, never on a request's path (the
    /// hub itself looks entries up, `device(_:)`, in flat memory). Setting it sets the start
    /// roster and empties the cache.
    public var roster: Roster {
        get {
            var whole = view.base
            _ = try? database.loadRoster(into: &whole)
            return whole
        }
        set { view.base = newValue }
    }

    /// A device as the roster holds it now (looked up; nil: unknown, or the database cannot
    /// be read).
    public func device(_ id: String) -> Roster.Device? { view.device(id) }

    /// A device for a request: from the cache when it holds it and the roster was looked at
    /// within the second (no hop to another thread); else the roster followed and the device
    /// looked up on the blocking threads.
    /// - Returns: the device (nil: not registered), or the database's error (answer 503).
    func requestDevice(_ id: String) async -> Result<Roster.Device?, any Error> {
        if let hit = view.cachedDevice(id) { return .success(hit) }
        return await BlockingWork.offload { () -> Result<Roster.Device?, any Error> in
            self.refreshRoster()
            return Result { try self.view.lookUpDevice(id) }
        }
    }

    /// A card as the roster holds it now.
    public func card(_ number: String) -> Roster.Card? { view.cards([number])[number] }

    /// Follows the roster changes applied to the database since the last look (at most once
    /// a second unless forced): changed entries leave the cache, programs are read again.
    func refreshRoster(force: Bool = false) {
        let seen: (mark: Int64, changed: Int?, skipped: [String])?
        do { seen = try view.refresh(force: force) } catch {
            logger.error("stored roster unreadable: keeping the roster as it was", metadata: ["error": "\(error)"])
            return
        }
        guard let seen else { return }
        for line in seen.skipped.prefix(20) {
            // Issue 21 item 4: a stored line the loader refuses is skipped, never stalls the roster.
            logger.error("ALERT roster line skipped", metadata: ["why": "\(line)"])
        }
        let cached = view.cacheCounts
        logger.notice("roster followed", metadata: ["changes": "\(seen.mark)", "entries_changed": "\(seen.changed.map(String.init) ?? "many: cache emptied")",
                                                   "cached_devices": "\(cached.devices)", "cached_cards": "\(cached.cards)"])
    }

    /// Batch requests received so far (counting those refused).
    public var batchRequests: Int { state.with { $0.batchRequests } }

    // MARK: HTTP

    /// The hub's routes: health, batches, roster changes, certificates, and the sync manifest and files.
    /// Every request's task is marked, so a blocking database call on it is refused (`BlockingWork`).
    public func makeRouter() -> Router<HubRequestContext> {
        let router = Router(context: HubRequestContext.self)
        // Issue 21 item 5: a request's task never waits for the database itself (`BlockingWork`).
        router.add(middleware: BlockingWork.RequestMarker())
        router.get("/metrics") { _, _ -> Response in await self.metricsResponse() }
        router.get("/v1/health") { _, _ -> Response in
            let count = await BlockingWork.offload { (try? self.database.recordCount()) ?? -1 }
            return Self.json(.ok, ["status": count >= 0 ? "ok" : "database_error", "records": count])
        }
        router.group("/v1/devices/:device_id/batches").add(middleware: BatchCounter(metrics: metrics)).add(middleware: BatchSignature(hub: self)).post { request, context -> Response in
            let deviceID = context.parameters.get("device_id") ?? ""
            return try await self.receive(request, context: context, deviceID: deviceID)
        }
        router.post("/v1/regions/:region/roster-changes") { request, context -> Response in
            try await self.receiveRosterChange(request, region: context.parameters.get("region") ?? "")
        }
        // The certificate routes: the device named in the path, active, signing (middleware).
        router.group("/v1/devices/:device_id/certificate").add(middleware: CertificateCaller(hub: self))
            .post { request, context -> Response in
                try await self.certificateRequest(request, context: context, deviceID: context.parameters.get("device_id") ?? "")
            }
            .get { request, context -> Response in
                try await self.certificateFetch(request, context: context, deviceID: context.parameters.get("device_id") ?? "")
            }
        // The sync routes: every request signed by a device of the path's region (middleware).
        router.group("/v1/regions/:region/snapshots").add(middleware: SyncSignature(hub: self))
            .get { request, context -> Response in
                try await self.syncManifest(request, context: context, region: context.parameters.get("region") ?? "")
            }
            .get(":snapshot_id") { request, context -> Response in
                try await self.syncFile(request, context: context, region: context.parameters.get("region") ?? "",
                                    snapshotID: context.parameters.get("snapshot_id") ?? "")
            }
        return router
    }

    /// The Hummingbird application (for `runService()` in the executable); HTTPS when
    /// `tls` is given (a production-like hub for the uploader's provisioned CA).
    public func makeApplication(host: String = "127.0.0.1", port: Int = 8470, tls: TLSConfiguration? = nil,
                                onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        Application(
            router: makeRouter(),
            // Idle connections (no request in progress) close after 30 s; headers are bounded.
            server: try tls.map { try .tls(.http1(configuration: http1), tlsConfiguration: $0) } ?? .http1(configuration: http1),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "settlement-hub"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    /// HTTP/1.1 as the hub serves it (issue 21 item 3): header fields bounded, idle
    /// connections closed after 30 s, and each connection guarded (`ConnectionGuard`: head
    /// and body deadlines, the connection cap with room kept for devices).
    var http1: HTTP1Channel.Configuration {
        let registry = connections
        return .init(additionalChannelHandlers: [ConnectionGuard(registry: registry)], idleTimeout: .seconds(30),
                     httpDecoderConfiguration: .init(maxHeaderFieldSize: 8 * 1024, maxHeaderListSize: 16 * 1024, maxHeaderFieldCount: 64))
    }

    /// A server TLS configuration from PEM files: the certificate chain and its private key.
    public static func tlsConfiguration(certificateChain: String, privateKey: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificateChain).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: privateKey, format: .pem)
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
    }

    /// Starts the hub in this process (port 0: an ephemeral port) and returns once it listens.
    public func start(host: String = "127.0.0.1", port: Int = 0, tls: TLSConfiguration? = nil) async throws -> RunningHub {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = try makeApplication(host: host, port: port, tls: tls) { p in
            continuation.yield(p)
            continuation.finish()
        }
        let task = Task {
            defer { continuation.finish() }
            try await app.run()
        }
        for await p in ports {
            return RunningHub(host: host, port: p, scheme: tls == nil ? "http" : "https", task: task)
        }
        try await task.value
        throw CancellationError()
    }

    // MARK: the batch endpoint

    /// Largest body read at all; anything between `limits.maxBytes` and this gets a tidy 413.
    static let readLimit = 8 << 20

    /// A batch request whose sender the middleware verified (`BatchSignature`): the body as
    /// read, the request's number, and the settings in force when it arrived.
    package struct VerifiedBatch: Sendable {
        /// The body, every byte the signature covers.
        package var bytes: [UInt8]
        /// Its number among the batch requests since start.
        package var number: Int
        /// The limits in force.
        package var limits: HubLimits
        /// The test faults in force (nil in production).
        package var faults: (any BatchFaultHook)?
    }

    /// Device-signature authentication of the batch endpoint, as middleware (issue 22): the
    /// sender is known before the body (a device not registered and active is refused before
    /// a byte of it is read, the connection closed), then the body is read against the limit
    /// and its `X-Signature` checked; the device and the body go on in the context.
    struct BatchSignature: RouterMiddleware {
        let hub: SettlementHub

        func handle(_ request: Request, context: HubRequestContext,
                    next: (Request, HubRequestContext) async throws -> Response) async throws -> Response {
            var context = context
            let deviceID = context.parameters.get("device_id") ?? ""
            switch try await hub.authenticateBatch(request, context: context, deviceID: deviceID) {
            case .answered(let response):
                return response
            case .verified(let device, let batch):
                context.device = device
                context.batch = batch
                return try await next(request, context)
            }
        }
    }

    /// What the batch authentication came to: the device and its batch, or an answer given
    /// already (a test fault).
    enum BatchAuthentication {
        case verified(Roster.Device, VerifiedBatch)
        case answered(Response)
    }

    /// Issue 21 item 3 and upload spec §2: the sender, the body and its signature.
    /// - Throws: `Stop` with the refusal (`403`, `413`, `401`, `503`).
    func authenticateBatch(_ request: Request, context: HubRequestContext, deviceID: String) async throws(Stop) -> BatchAuthentication {
        let looked = await requestDevice(deviceID)
        // The roster unreadable: "try again", never "unknown device" (the kiosk would stop
        // uploading for minutes and raise an alert for nothing).
        guard case .success(let entry) = looked else { throw Stop(response: Self.databaseUnavailable(close: true)) }
        let (limits, faults, number) = state.with { s -> (HubLimits, (any BatchFaultHook)?, Int) in
            s.batchRequests += 1
            return (s.limits, s.faults, s.batchRequests)
        }
        guard let entry else {
            throw Stop(response: Self.error(.forbidden, "unknown_device", "device \(deviceID) is not registered", close: true))
        }
        guard entry.status == "active" else {
            throw Stop(response: Self.error(.forbidden, "device_not_active", "device \(deviceID) is \(entry.status)", close: true))
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limits.maxBytes {
            throw Stop(response: Self.error(.contentTooLarge, "too_large", "the batch is \(length) bytes; at most \(limits.maxBytes)", close: true))
        }
        let bytes = try await readBatchBody(request, limits: limits)
        if let injected = faults?.beforeStoring(request: number) {
            logger.notice("failing a batch on purpose", metadata: ["device_id": "\(deviceID)", "status": "\(injected.status.code)", "request": "\(number)"])
            return .answered(injected)
        }
        guard let signatureText = request.headers[.xSignature], let signature = Data(base64Encoded: signatureText),
              entry.publicKey.isValidSignature(signature, for: bytes) else {
            logger.warning("bad batch signature", metadata: ["device_id": "\(deviceID)"])
            throw Stop(response: Self.error(.unauthorized, "bad_signature", "X-Signature does not verify with the key of \(deviceID)"))
        }
        connections.authenticated(context.channel, device: deviceID)
        return .verified(entry, VerifiedBatch(bytes: bytes, number: number, limits: limits, faults: faults))
    }

    /// `POST /v1/devices/{device_id}/batches`, its sender verified by `BatchSignature`: the
    /// batch stored and answered record by record.
    func receive(_ request: Request, context: HubRequestContext, deviceID: String) async throws -> Response {
        guard let entry = context.device, let verified = context.batch else {
            throw Stop(response: Self.error(.unauthorized, "bad_signature", "the batch is not signed"))
        }
        let (bytes, number, limits, faults) = (verified.bytes, verified.number, verified.limits, verified.faults)
        var log = logger
        log[metadataKey: "device_id"] = "\(deviceID)"
        // Issue 21 item 3: at most `batchesPerSecond` a second per device, counted once the
        // signature shows the device sent it.
        if let wait = deviceLimiter.batch(deviceID, perSecond: limits.batchesPerSecond) {
            return Self.json(.tooManyRequests, ["error": "too_many_requests", "message": "at most \(limits.batchesPerSecond) batch requests a second"],
                             headers: [.retryAfter: "\(wait)"])
        }
        guard bytes.count <= limits.maxBytes else {
            throw Stop(response: Self.error(.contentTooLarge, "too_large", "the batch is \(bytes.count) bytes; at most \(limits.maxBytes)"))
        }

        let batch: Batch
        batch = try Self.readBatch(bytes, deviceID: deviceID, limits: limits, log: log)
        let fractional = faults?.fractionalReceivedAt ?? false
        let roster: Roster
        roster = try await rosterForBatch(batch, log: log)
        let results: [RecordResult]
        do {
            results = try await database.store(batchID: batch.batchID, deviceID: deviceID, device: entry, roster: roster, sentAt: batch.sentAt,
                                               records: batch.records, consentStart: consentStart, now: now,
                                               format: { Timestamp.string($0, fractional: fractional) })
        } catch {
            log.error("cannot store the batch", metadata: ["error": "\(error)"])
            throw Stop(response: Self.error(.internalServerError, "storage", "the hub could not store the batch"))
        }
        Self.logResults(results, log: log)
        metrics.records(results)
        let answer = Self.batchAnswer(results)
        guard let faults else { return answer }
        return await faults.afterStoring(request: number, answer: answer, results: results)
    }

    // MARK: answers

    /// `503 database_error` with `Retry-After: 30`: the database could not be read or written;
    /// nothing was stored, and the same request later gets the real answer.
    /// - Parameter close: the body was not read: `Connection: close`.
    static func databaseUnavailable(close: Bool = false) -> Response {
        var headers: HTTPFields = [.retryAfter: "30"]
        if close { headers[.connection] = "close" }
        return json(.serviceUnavailable, ["error": "database_error", "message": "try again later"], headers: headers)
    }

    /// - Parameter close: the body was not read: `Connection: close`, so nothing more of it is taken.
    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String, close: Bool = false) -> Response {
        json(status, ["error": code, "message": message], headers: close ? [.connection: "close"] : HTTPFields())
    }

    static func json(_ status: HTTPResponse.Status, _ object: [String: Any], headers: HTTPFields = HTTPFields()) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// A hub running in this process (tests): its address and how to stop it.
public struct RunningHub: Sendable {
    /// The address it listens on.
    public let host: String
    /// The port it listens on (the one the system chose when started with port 0).
    public let port: Int
    /// `http`, or `https` when started with TLS.
    public let scheme: String
    let task: Task<Void, Error>

    /// `http(s)://host:port`, the hub URL a kiosk is provisioned with.
    public var url: String { "\(scheme)://\(host):\(port)" }

    /// Stops listening and waits until the server is down.
    public func stop() async {
        task.cancel()
        _ = await task.result
    }
}

extension HTTPField.Name {
    static let xSignature = HTTPField.Name("X-Signature")!
}


extension BlockingWork {
    /// Marks a request's task, so that a blocking database call made on it is refused
    /// (`BlockingWork.check`) instead of stalling the cooperative pool.
    struct RequestMarker<Context: RequestContext>: RouterMiddleware {
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            try await BlockingWork.$onRequestTask.withValue(true) { try await next(request, context) }
        }
    }
}
