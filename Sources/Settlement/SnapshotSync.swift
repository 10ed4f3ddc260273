import AsyncHTTPClient
import Crypto
import KioskProtocol
import Foundation
import KioskStore
import Logging
import Metrics
import NIOCore

/// How the kiosk asks the hub for snapshots (sync spec §2–4).
public struct SyncConfiguration: Sendable {
    /// The hub's base URL from provisioning (checked by `HubURL.check`).
    public private(set) var hubURL: String
    /// The region to sync; nil: the installed snapshot's (a kiosk with neither cannot sync).
    public var region: String?
    /// The long poll asked for by `run()` (sync spec §4: 240 s).
    public var longPoll = 240
    /// Bound on a manifest request beyond its long poll.
    public var requestTimeout: Duration = .seconds(30)
    /// Bound on one file download.
    public var downloadTimeout: Duration = .seconds(1800)
    /// After a failure: 5 s doubling to at most 15 minutes, with jitter (sync spec §4).
    public var backoff = Backoff(initial: .seconds(5), maximum: .seconds(900))
    /// Largest manifest read.
    public var maxManifestBytes = 1 << 20
    /// Largest snapshot file taken (a manifest that names more is nonsense).
    public var maxFileBytes: Int64 = 4 << 30
    /// Longest `Retry-After` obeyed.
    public var maxRetryAfter: Duration = .seconds(3600)

    /// The configuration for a hub; the defaults are sync spec §4's.
    /// - Throws: `HubURLError` when the kiosk may not use the URL (upload spec §2).
    public init(hubURL: String, region: String? = nil) throws(HubURLError) {
        _ = try HubURL.check(hubURL)
        self.hubURL = hubURL
        self.region = region
    }

    /// The hub URL without a trailing `/`, and its path (what the hub sees before `/v1/…`).
    var base: (url: String, path: String) {
        var b = hubURL
        while b.hasSuffix("/") { b.removeLast() }
        return (b, URLComponents(string: b)?.percentEncodedPath ?? "")
    }
}

/// Why a sync round did not bring the kiosk up to date. The installed snapshot is never
/// touched by a failed round.
public enum SyncFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// No region provisioned and no snapshot installed.
    case noRegion
    /// The hub could not be reached, or a download broke off.
    case unreachable(String)
    /// The hub did not answer in time.
    case timedOut
    /// 401/403; `hubTime` when the hub said its time.
    case refused(status: Int, message: String, hubTime: String?)
    /// 404: the hub publishes nothing for the region.
    case notPublished(region: String)
    /// 429 or 503, with the hub's `Retry-After` when given.
    case throttled(status: Int, retryAfter: Duration?)
    /// Another 5xx.
    case serverError(status: Int)
    /// An answer the spec does not allow (a bad manifest, a wrong status, a file longer than said).
    case nonsense(String)
    /// A file that does not match its manifest twice, or that the installer refuses.
    case fileRefused(snapshotID: String, reason: String)
    /// The kiosk's own disk or database.
    case store(String)
    /// The task was cancelled.
    case cancelled

    /// The failure's code, as `/healthz` shows it (`last_failure_code`) and `kioskctl` prints it.
    public var code: String {
        switch self {
        case .noRegion: return "no_region"
        case .unreachable: return "hub_unreachable"
        case .timedOut: return "hub_timeout"
        case .refused: return "hub_refused_device"
        case .notPublished: return "no_snapshot_published"
        case .throttled: return "hub_busy"
        case .serverError: return "hub_error"
        case .nonsense: return "hub_nonsense"
        case .fileRefused: return "snapshot_refused"
        case .store: return "storage_error"
        case .cancelled: return "cancelled"
        }
    }

    /// The failure in one line.
    public var description: String {
        switch self {
        case .noRegion: return "no region to sync: install a first snapshot or provision the region"
        case .unreachable(let why): return "the hub could not be reached: \(why)"
        case .timedOut: return "the hub did not answer in time"
        case .refused(let s, let m, let t): return "the hub refused this device (HTTP \(s)): \(m)" + (t.map { " (hub time \($0))" } ?? "")
        case .notPublished(let r): return "the hub publishes no snapshot for region \(r)"
        case .throttled(let s, let a): return "the hub is busy (HTTP \(s))" + (a.map { ", retry after \($0.seconds) s" } ?? "")
        case .serverError(let s): return "the hub failed (HTTP \(s))"
        case .nonsense(let why): return "the hub answered nonsense: \(why)"
        case .fileRefused(let id, let why): return "snapshot \(id) refused: \(why)"
        case .store(let why): return "the kiosk store failed: \(why)"
        case .cancelled: return "the sync was cancelled"
        }
    }
}

extension SyncFailure {
    /// A hub's answer other than success to a device-signed request (sync spec §2, §5):
    /// 401/403 refused (with the hub's `hub_time` when it gave one), 429/503 busy (with
    /// `Retry-After` in seconds when given), 5xx failed, anything else nonsense.
    static func answer(status: Int, retryAfter: String?, body: [UInt8], to what: String) -> SyncFailure {
        let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        let message = (object?["message"] as? String) ?? (object?["error"] as? String) ?? ""
        switch status {
        case 401, 403: return .refused(status: status, message: String(message.prefix(300)), hubTime: object?["hub_time"] as? String)
        case 429, 503: return .throttled(status: status, retryAfter: retryAfter.flatMap { Int($0) }.map { .seconds($0) })
        case 500...599: return .serverError(status: status)
        default: return .nonsense("HTTP \(status) to \(what)")
        }
    }
}

/// One step of a manifest (sync spec §2), checked.
public struct SyncStep: Sendable, Equatable {
    /// The snapshot the step installs.
    public var snapshotID: String
    /// `full` or `delta`.
    public var kind: String
    /// A delta's base: the installed snapshot or the step before; nil for a full.
    public var baseSnapshotID: String?
    /// `issued_at`, RFC 3339.
    public var issuedAt: String
    /// The file's size in bytes, from 1 to the configured bound.
    public var bytes: Int64
    /// The file's SHA-256, 64 lowercase hex digits.
    public var sha256: String
    /// `/v1/regions/{region}/snapshots/{snapshot_id}`, where the file is fetched.
    public var path: String
}

/// What one round did.
public struct SyncRound: Sendable, Equatable {
    /// The snapshots installed, in order.
    public var installed: [InstallReport] = []
    /// The hub's latest for the region (nil when it answered `304`).
    public var latest: String?
    /// Why the round stopped short; nil when the kiosk is up to date.
    public var failure: SyncFailure?
    /// What to wait before the next round (0 after a success: ask again at once).
    public var retryAfter: Duration = .zero
}

/// For `/healthz` and the screen: the snapshot's freshness as the sync loop sees it.
public struct SyncStatus: Sendable, Equatable {
    /// When the last round began.
    public var lastAttemptAt: Date?
    /// When a round last brought the kiosk up to date.
    public var lastSuccessAt: Date?
    /// The last round's failure, in words; nil after a success.
    public var lastFailure: String?
    /// The last round's failure code; nil after a success.
    public var lastFailureCode: String?
    /// Failed rounds in a row (0 after a success).
    public var consecutiveFailures = 0
}

/// The manifest's rules (sync spec §2), on the hub's bytes.
public enum SyncManifestReader {
    /// The steps, or why the manifest is nonsense: the wrong region, `latest` not the last
    /// step, a chain that does not start at `installed` (or a full) or has a gap, a size or
    /// digest that cannot be, a path outside the region's snapshots.
    public static func steps(_ bytes: [UInt8], region: String, installed: String?, maxFileBytes: Int64) throws(SyncFailure) -> (latest: String, steps: [SyncStep]) {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else { throw .nonsense("the manifest is not a JSON object") }
        guard o["region"] as? String == region else { throw .nonsense("the manifest is for region \(o["region"] ?? "none"), not \(region)") }
        guard let latest = o["latest"] as? String, Identifiers.isSyncName(latest) else { throw .nonsense("the manifest's latest is missing or not a snapshot id") }
        guard let list = o["steps"] as? [[String: Any]], !list.isEmpty, list.count <= 1000 else {
            throw .nonsense("the manifest's steps are missing, empty or too many")
        }
        var steps: [SyncStep] = []
        var previous = installed
        for (i, s) in list.enumerated() {
            guard let id = s["snapshot_id"] as? String, Identifiers.isSyncName(id) else { throw .nonsense("step \(i): snapshot_id missing or unsafe") }
            guard let kind = s["kind"] as? String, kind == "full" || kind == "delta" else { throw .nonsense("step \(i): kind is neither full nor delta") }
            let base = s["base_snapshot_id"] as? String
            if kind == "delta" {
                guard let base, base == previous else {
                    throw .nonsense("step \(i): delta \(id) is based on \(base ?? "nothing"), not on \(previous ?? "nothing") (a gap in the chain)")
                }
            }
            guard let issuedAt = s["issued_at"] as? String, Timestamp.date(issuedAt) != nil else { throw .nonsense("step \(i): issued_at is not a time") }
            guard let size = JSONInteger.value(s["bytes"]), size > 0, size <= maxFileBytes else {
                throw .nonsense("step \(i): bytes is not a size from 1 to \(maxFileBytes)")
            }
            guard let digest = s["sha256"] as? String, digest.utf8.count == 64,
                  digest.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
                throw .nonsense("step \(i): sha256 is not 64 lowercase hex digits")
            }
            guard let path = s["path"] as? String, path == "/v1/regions/\(region)/snapshots/\(id)" else {
                throw .nonsense("step \(i): path is not the region's snapshot \(id)")
            }
            guard !steps.contains(where: { $0.snapshotID == id }) else { throw .nonsense("step \(i): \(id) appears twice") }
            steps.append(SyncStep(snapshotID: id, kind: kind, baseSnapshotID: kind == "delta" ? base : nil, issuedAt: issuedAt,
                                  bytes: size, sha256: digest, path: path))
            previous = id
        }
        guard steps.last?.snapshotID == latest else { throw .nonsense("the manifest's latest \(latest) is not its last step") }
        return (latest, steps)
    }
}

/// The kiosk's sync client (sync spec §2–4): asks the hub what to fetch, downloads each file
/// into the state folder (resuming with `Range`), checks it against the manifest and
/// installs it through the ordinary installer, which alone decides (authority signature,
/// count, digest). A round that fails leaves the installed snapshot as it was.
public actor SnapshotSync {
    /// The hub, the region and the bounds.
    public nonisolated let configuration: SyncConfiguration
    let store: KioskStore
    let device: DeviceContext
    let signingKey: Curve25519.Signing.PrivateKey
    let trustedAuthorities: [String: Curve25519.Signing.PublicKey]
    let directory: URL
    let client: HTTPClient
    let environment: UploaderEnvironment
    let logger: Logger

    /// The sync loop's freshness figures, for `/healthz`.
    public private(set) var status = SyncStatus()
    /// Alerts raised once per streak.
    private var clockAlerted = false
    private var staleAlerted = false
    private let startedAt: Date

    /// - Parameter directory: where partial downloads are kept (in the state folder, so a
    ///   download that broke off resumes after a restart).
    public init(store: KioskStore, device: DeviceContext, signingKey: Curve25519.Signing.PrivateKey,
                trustedAuthorities: [String: Curve25519.Signing.PublicKey], directory: URL, configuration: SyncConfiguration,
                httpClient: HTTPClient = Uploader.sharedHTTPClient, environment: UploaderEnvironment = .live,
                logger: Logger = Logger(label: "settlement.sync")) {
        self.store = store
        self.device = device
        self.signingKey = signingKey
        self.trustedAuthorities = trustedAuthorities
        self.directory = directory
        self.configuration = configuration
        self.client = httpClient
        self.environment = environment
        var logger = logger
        logger[metadataKey: "device_id"] = "\(device.deviceID)"
        self.logger = logger
        self.startedAt = environment.now()
    }

    /// Rounds until the task is cancelled: a long poll, at once again after a success or a
    /// `304`, backoff with jitter after a failure (sync spec §4).
    public func run() async {
        logger.info("snapshot sync started", metadata: ["hub": "\(configuration.hubURL)"])
        while !Task.isCancelled {
            let round = await self.round(wait: configuration.longPoll)
            if Task.isCancelled { break }
            if round.retryAfter > .zero {
                do { try await environment.sleep(round.retryAfter) } catch { break }
            }
        }
        logger.info("snapshot sync stopped")
    }

    /// One round: the manifest (long-polling `wait` seconds), then every step fetched and
    /// installed in order.
    public func round(wait: Int = 0) async -> SyncRound {
        status.lastAttemptAt = environment.now()
        var result = await attempt(wait: wait, askWithInstalled: true)
        // A chain the kiosk cannot install (its base is not what it holds): ask again for a full.
        if case .fileRefused(_, let why)? = result.failure, why.hasPrefix("snapshot refused (base_not_installed)") {
            logger.notice("the hub's chain does not start at the installed snapshot: asking for a full")
            let again = await attempt(wait: 0, askWithInstalled: false)
            result.installed += again.installed
            result.latest = again.latest ?? result.latest
            result.failure = again.failure
        }
        await settle(&result)
        return result
    }

    private func settle(_ result: inout SyncRound) async {
        let now = environment.now()
        defer { recordMetrics(result) }
        if let failure = result.failure {
            status.consecutiveFailures += 1
            status.lastFailure = failure.description
            status.lastFailureCode = failure.code
            var delay = configuration.backoff.delay(failures: status.consecutiveFailures, random: environment.random())
            if case .throttled(_, let after?) = failure { delay = min(max(after, delay), configuration.maxRetryAfter) }
            result.retryAfter = failure == .cancelled ? .zero : delay
            logger.warning("snapshot sync failed", metadata: ["why": "\(failure)", "retry_in_s": "\(delay.seconds)"])
            await checkStale(now: now)
        } else {
            status.consecutiveFailures = 0
            status.lastSuccessAt = now
            status.lastFailure = nil
            status.lastFailureCode = nil
            clockAlerted = false
            staleAlerted = false
            result.retryAfter = .zero
        }
    }

    /// For `/metrics`: rounds by result, failures in a row, when the last success was, and the
    /// installed snapshot's `issued_at` (its age is `time() - kiosk_snapshot_issued_timestamp_seconds`).
    private func recordMetrics(_ result: SyncRound) {
        Counter(label: "kiosk_sync_rounds_total", dimensions: [("result", result.failure?.code ?? "ok")]).increment()
        Gauge(label: "kiosk_sync_consecutive_failures").record(status.consecutiveFailures)
        if let t = status.lastSuccessAt { Gauge(label: "kiosk_sync_last_success_timestamp_seconds").record(t.timeIntervalSince1970) }
        if let issued = (try? store.installedSnapshot()).flatMap({ $0 }).flatMap({ Timestamp.date($0.header.issuedAt) }) {
            Gauge(label: "kiosk_snapshot_issued_timestamp_seconds").record(issued.timeIntervalSince1970)
        }
        if !result.installed.isEmpty { Counter(label: "kiosk_snapshot_installs_total").increment(by: result.installed.count) }
    }

    /// Sync spec §4: `snapshot_stale` once, when the snapshot has under 72 hours left and no
    /// round has succeeded for an hour.
    private func checkStale(now: Date) async {
        guard !staleAlerted else { return }
        let since = status.lastSuccessAt ?? startedAt
        guard now.timeIntervalSince(since) >= 3600 else { return }
        let expires = (try? store.installedSnapshot()).flatMap { $0 }.flatMap { Timestamp.date($0.header.expiresAt) }
        guard let expires, expires.timeIntervalSince(now) < 72 * 3600 else { return }
        staleAlerted = true
        raise("snapshot_stale", "the installed snapshot expires at \(Timestamp.string(expires)) and no sync has succeeded since \(Timestamp.string(since)): \(status.lastFailure ?? "")")
    }

    private func raise(_ code: String, _ detail: String) {
        do { _ = try store.recordAlert(device: device, code: code, cardNumber: nil, detail: detail, now: environment.now()) } catch {
            logger.error("could not record an alert", metadata: ["code": "\(code)", "error": "\(error)"])
        }
    }

    private func attempt(wait: Int, askWithInstalled: Bool) async -> SyncRound {
        var round = SyncRound()
        let installedHeader: SnapshotHeader?
        do { installedHeader = try store.installedSnapshot()?.header } catch {
            round.failure = .store("\(StoreError(error))")
            return round
        }
        guard let region = configuration.region ?? installedHeader?.region, Identifiers.isSyncName(region) else {
            round.failure = .noRegion
            return round
        }
        let installed = askWithInstalled ? installedHeader?.snapshotID : nil
        var query = "?"
        if let installed { query += "installed=\(installed)&" }
        query += "wait=\(max(0, min(wait, 300)))"
        let manifestPath = "/v1/regions/\(region)/snapshots" + query
        let answer = await get(manifestPath, timeout: configuration.requestTimeout + .seconds(wait), range: nil, limit: configuration.maxManifestBytes)
        let reply: Reply
        switch answer {
        case .failure(let f): round.failure = f; return round
        case .success(let r): reply = r
        }
        switch reply.status {
        case 200: break
        case 304: return round
        default:
            round.failure = failure(for: reply, region: region)
            return round
        }
        let manifest: (latest: String, steps: [SyncStep])
        do { manifest = try SyncManifestReader.steps(reply.body, region: region, installed: installed, maxFileBytes: configuration.maxFileBytes) } catch {
            round.failure = error
            return round
        }
        round.latest = manifest.latest
        for step in manifest.steps {
            if Task.isCancelled { round.failure = .cancelled; return round }
            do {
                let file = try await fetch(step)
                let report = try await install(file, step: step)
                round.installed.append(report)
                logger.notice("snapshot installed", metadata: ["snapshot_id": "\(step.snapshotID)", "kind": "\(step.kind)", "records": "\(report.records)"])
            } catch let f as SyncFailure {
                round.failure = f
                return round
            } catch {
                round.failure = .store("\(error)")
                return round
            }
        }
        return round
    }

    private func failure(for reply: Reply, region: String) -> SyncFailure {
        if reply.status == 404 { return .notPublished(region: region) }
        let failure = SyncFailure.answer(status: reply.status, retryAfter: reply.retryAfter, body: reply.body, to: "a sync request")
        if case .refused(_, _, let hubTime?) = failure, let hub = Timestamp.date(hubTime),
           abs(hub.timeIntervalSince(environment.now())) > 300, !clockAlerted {
            // Sync spec §4: one clock_suspect alert with both times; it does not stop grants by itself.
            clockAlerted = true
            raise("clock_suspect", "the hub's time \(hubTime) is more than 300 s from the kiosk's clock \(Timestamp.string(environment.now()))")
        }
        return failure
    }

    // MARK: files

    /// The file of `step`, whole and matching the manifest: resumed from a partial download
    /// when there is one; fetched whole once more when it does not match.
    private func fetch(_ step: SyncStep) async throws -> URL {
        let part = directory.appendingPathComponent("\(step.snapshotID).part")
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw SyncFailure.store("cannot make \(directory.path): \(error)")
        }
        for attempt in 1...2 {
            try await download(step, to: part)
            if try matches(part, step) { return part }
            try? FileManager.default.removeItem(at: part)
            if attempt == 2 {
                raise("snapshot_refused", "snapshot \(step.snapshotID) does not match its manifest (bytes or sha256), twice")
                throw SyncFailure.fileRefused(snapshotID: step.snapshotID, reason: "the file does not match its manifest (bytes or sha256), twice")
            }
            logger.warning("downloaded file does not match its manifest: fetching it whole again", metadata: ["snapshot_id": "\(step.snapshotID)"])
        }
        throw SyncFailure.fileRefused(snapshotID: step.snapshotID, reason: "unreachable")
    }

    private func matches(_ file: URL, _ step: SyncStep) throws -> Bool {
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: file) } catch { throw SyncFailure.store("cannot read \(file.path): \(error)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        var total: Int64 = 0
        do {
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                hasher.update(data: chunk)
                total += Int64(chunk.count)
            }
        } catch { throw SyncFailure.store("cannot read \(file.path): \(error)") }
        return total == step.bytes && Hex.encode(hasher.finalize()) == step.sha256
    }

    /// Brings `part` up to the manifest's size: asks for the rest with `Range: bytes=N-` when a
    /// partial file is there; a `200` to that starts the file again.
    private func download(_ step: SyncStep, to part: URL) async throws {
        var have = (try? FileManager.default.attributesOfItem(atPath: part.path)[.size] as? Int64) ?? 0
        if have > step.bytes { try? FileManager.default.removeItem(at: part); have = 0 }
        if have == step.bytes { return }
        if !FileManager.default.fileExists(atPath: part.path) {
            guard FileManager.default.createFile(atPath: part.path, contents: nil) else { throw SyncFailure.store("cannot create \(part.path)") }
        }
        let request = signedRequest(step.path, range: have > 0 ? "bytes=\(have)-" : nil)
        let response: HTTPClientResponse
        do { response = try await client.execute(request, timeout: TimeAmount(configuration.downloadTimeout)) } catch {
            throw transportFailure(error)
        }
        let status = Int(response.status.code)
        var offset: Int64
        switch status {
        case 200: offset = 0
        case 206:
            guard let range = response.headers.first(name: "Content-Range"), range.hasPrefix("bytes \(have)-") else {
                throw SyncFailure.nonsense("a 206 whose Content-Range does not start at \(have)")
            }
            offset = have
        case 416:
            try? FileManager.default.removeItem(at: part)
            throw SyncFailure.nonsense("the hub refused the range bytes=\(have)- of \(step.snapshotID)")
        default:
            var buffer = (try? await response.body.collect(upTo: 64 << 10)) ?? ByteBuffer()
            throw failure(for: Reply(status: status, retryAfter: response.headers.first(name: "Retry-After"),
                                     body: buffer.readBytes(length: buffer.readableBytes) ?? []), region: configuration.region ?? "")
        }
        let handle: FileHandle
        do {
            handle = try FileHandle(forWritingTo: part)
            try handle.truncate(atOffset: UInt64(offset))
            try handle.seek(toOffset: UInt64(offset))
        } catch { throw SyncFailure.store("cannot write \(part.path): \(error)") }
        defer { try? handle.synchronize(); try? handle.close() }
        do {
            for try await chunk in response.body {
                guard offset + Int64(chunk.readableBytes) <= step.bytes else {
                    throw SyncFailure.nonsense("\(step.snapshotID) is longer than the manifest's \(step.bytes) bytes")
                }
                do { try chunk.withUnsafeReadableBytes { try handle.write(contentsOf: $0) } } catch {
                    throw SyncFailure.store("cannot write \(part.path) (disk full?): \(error)")
                }
                offset += Int64(chunk.readableBytes)
            }
        } catch let f as SyncFailure {
            throw f
        } catch {
            // Cut off: what arrived stays, and the next attempt resumes from there.
            logger.notice("download broke off", metadata: ["snapshot_id": "\(step.snapshotID)", "have": "\(offset)", "of": "\(step.bytes)"])
            throw transportFailure(error)
        }
        guard offset == step.bytes else {
            throw SyncFailure.unreachable("the download of \(step.snapshotID) ended at \(offset) of \(step.bytes) bytes")
        }
    }

    private func install(_ file: URL, step: SyncStep) async throws -> InstallReport {
        defer { try? FileManager.default.removeItem(at: file) }
        let (store, authorities, now) = (self.store, trustedAuthorities, environment.now())
        do {
            // Off the concurrency pool: a large install takes seconds of blocking SQLite work.
            return try await withCheckedThrowingContinuation { c in
                DispatchQueue.global(qos: .utility).async {
                    // 5,000-row ranges: the kiosk's own taps write in turn behind the range under
                    // way, several times in a 确认 (issue 24 item 3: 20,000-row ranges made a 确认
                    // wait 390–430 ms while the hub, a drain and the page shared the two cores).
                    c.resume(with: Result { try store.installSnapshot(at: file, trustedAuthorities: authorities, now: now, rowsPerRange: 5_000) })
                }
            }
        } catch let refusal as SnapshotRefusal {
            if case .storage = refusal { throw SyncFailure.store(refusal.description) }
            if case .wrongBase = refusal {} else {
                raise("snapshot_refused", "\(step.snapshotID) from the hub: \(refusal)")
            }
            throw SyncFailure.fileRefused(snapshotID: step.snapshotID, reason: refusal.description)
        }
    }

    // MARK: transport

    struct Reply {
        var status: Int
        var retryAfter: String?
        var body: [UInt8]
    }

    /// `path` (from the hub's root) signed as sync spec §2 says.
    func signedRequest(_ path: String, range: String?) -> HTTPClientRequest {
        var request = Self.signed("GET", path, configuration: configuration, deviceID: device.deviceID, key: signingKey, now: environment.now())
        if let range { request.headers.add(name: "Range", value: range) }
        return request
    }

    /// A request to `path` (from the hub's root) signed as sync spec §2 says: `X-Device-Id`,
    /// `X-Date`, and `X-Signature` over `"SYNC-V1\n" ‖ method ‖ "\n" ‖ path-and-query ‖ "\n" ‖ X-Date`.
    static func signed(_ method: String, _ path: String, configuration: SyncConfiguration, deviceID: String,
                       key: Curve25519.Signing.PrivateKey, now: Date) -> HTTPClientRequest {
        let base = configuration.base
        let date = Timestamp.string(now)
        let message = SigningMessage.sync(method: method, pathAndQuery: base.path + path, date: date)
        var request = HTTPClientRequest(url: base.url + path)
        request.method = method == "POST" ? .POST : .GET
        request.headers.add(name: "X-Device-Id", value: deviceID)
        request.headers.add(name: "X-Date", value: date)
        if let signature = try? key.signature(for: message) {
            request.headers.add(name: "X-Signature", value: Data(signature).base64EncodedString())
        }
        if method == "POST" { request.body = .bytes([]) }
        return request
    }

    private func get(_ path: String, timeout: Duration, range: String?, limit: Int) async -> Result<Reply, SyncFailure> {
        let request = signedRequest(path, range: range)
        do {
            let response = try await client.execute(request, timeout: TimeAmount(timeout))
            var buffer = try await response.body.collect(upTo: limit)
            return .success(Reply(status: Int(response.status.code), retryAfter: response.headers.first(name: "Retry-After"),
                                  body: buffer.readBytes(length: buffer.readableBytes) ?? []))
        } catch is NIOTooManyBytesError {
            return .failure(.nonsense("the answer is larger than \(limit) bytes"))
        } catch {
            return .failure(transportFailure(error))
        }
    }

    private func transportFailure(_ error: Error) -> SyncFailure {
        if error is CancellationError || Task.isCancelled { return .cancelled }
        if let e = error as? HTTPClientError, e == .deadlineExceeded || e == .readTimeout || e == .connectTimeout { return .timedOut }
        return .unreachable(String(describing: error).prefix(300).description)
    }
}
