import Crypto
import KioskProtocol
import Foundation
import HubRules
import HubStore
import HTTPTypes
import Hummingbird
import NIOCore

/// The sync endpoints (sync spec §2–3): the manifest with its long poll, and the files with
/// `ETag` and `Range`. Every request is signed by a registered, active device.
extension SettlementHub {
    /// `"SYNC-V1\n" ‖ method ‖ "\n" ‖ path-and-query ‖ "\n" ‖ X-Date`: what a device signs.
    public static func syncMessage(method: String, pathAndQuery: String, date: String) -> [UInt8] {
        SigningMessage.sync(method: method, pathAndQuery: pathAndQuery, date: date)
    }

    /// Longest long poll granted (sync spec §2: `wait` 0–300).
    static let maxWait = 300
    /// Largest distance between `X-Date` and the hub's clock (sync spec §2).
    static let maxClockSkew: TimeInterval = 300

    /// An answer given instead of going on: a refusal, or `503` when the database cannot be
    /// read. Handlers and middleware throw it; Hummingbird writes its response
    /// (`HTTPResponseError`), byte for byte the hub's JSON error.
    struct Stop: Error, HTTPResponseError {
        let response: Response
        /// The answer's status.
        var status: HTTPResponse.Status { response.status }
        /// The answer, as built when the handler refused.
        func response(from request: Request, context: some RequestContext) throws -> Response { response }
    }

    /// The device that signed the request, active and within the clock window (sync spec §2).
    /// - Throws: `Stop` with the answer: `401` with `hub_time`, or `503 database_error`.
    func authenticateSync(_ request: Request, context: HubRequestContext) async throws(Stop) -> Roster.Device {
        let hubTime = Timestamp.string(now(), fractional: false)
        func refuse(_ code: String, _ message: String) -> Stop {
            Stop(response: Self.json(.unauthorized, ["error": code, "message": message, "hub_time": hubTime]))
        }
        guard let deviceID = request.headers[.xDeviceID] else {
            throw refuse("unknown_device", "X-Device-Id names no registered device")
        }
        guard case .success(let found) = await requestDevice(deviceID) else { throw Stop(response: Self.databaseUnavailable()) }
        guard let entry = found else {
            throw refuse("unknown_device", "X-Device-Id names no registered device")
        }
        guard entry.status == "active" else { throw refuse("device_not_active", "device \(deviceID) is \(entry.status)") }
        guard let date = request.headers[.xDate], let sent = Timestamp.date(date) else {
            throw refuse("bad_date", "X-Date is missing or not an RFC 3339 time")
        }
        guard abs(sent.timeIntervalSince(now())) <= Self.maxClockSkew else {
            throw refuse("clock_skew", "X-Date \(date) is more than \(Int(Self.maxClockSkew)) s from the hub's clock \(hubTime)")
        }
        let message = Self.syncMessage(method: request.method.rawValue, pathAndQuery: request.head.path ?? "", date: date)
        guard let text = request.headers[.xSignature], let signature = Data(base64Encoded: text),
              entry.publicKey.isValidSignature(signature, for: message) else {
            throw refuse("bad_signature", "X-Signature does not verify with the key of \(deviceID)")
        }
        connections.authenticated(context.channel, device: deviceID)
        return entry
    }

    /// The signing device, given its own region's snapshots only (issue 21 item 4): else
    /// `403 wrong_region`.
    func authenticateSync(_ request: Request, context: HubRequestContext, region: String) async throws(Stop) -> Roster.Device {
        let device = try await authenticateSync(request, context: context)
        guard device.region == region else {
            throw Stop(response: Self.error(.forbidden, "wrong_region", "this device is not registered in region \(region)"))
        }
        return device
    }

    /// Device-signature authentication as middleware (sync spec §2), for the sync routes: the
    /// signing device, active, in the window and of the path's region, is put in the
    /// context; any other request is answered here (`401`/`403`/`503`) and goes no further.
    struct SyncSignature: RouterMiddleware {
        let hub: SettlementHub

        func handle(_ request: Request, context: HubRequestContext,
                    next: (Request, HubRequestContext) async throws -> Response) async throws -> Response {
            var context = context
            do {
                context.device = try await hub.authenticateSync(request, context: context, region: context.parameters.get("region") ?? "")
            } catch {
                return error.response
            }
            return try await next(request, context)
        }
    }

    /// `GET /v1/regions/{region}/snapshots`: the manifest, long-polled (its device verified by `SyncSignature`).
    func syncManifest(_ request: Request, context: HubRequestContext, region: String) async throws -> Response {
        guard context.device != nil else { throw Stop(response: Self.error(.unauthorized, "unknown_device", "the request is not signed")) }
        guard Identifiers.isSyncName(region) else { throw Stop(response: Self.error(.badRequest, "bad_region", "region has characters a URL cannot carry")) }
        let query = request.uri.queryParameters
        let installed = query["installed"].map(String.init)
        var wait = 0
        if let w = query["wait"] {
            guard let n = Int(String(w)), (0...Self.maxWait).contains(n) else {
                throw Stop(response: Self.error(.badRequest, "bad_wait", "wait must be an integer from 0 to \(Self.maxWait)"))
            }
            wait = n
        }
        let deadline = ContinuousClock.now + .seconds(wait)
        // Issue 21 item 3: a device holds at most `longPollsPerDevice` long polls at once.
        let deviceID = request.headers[.xDeviceID] ?? ""
        if wait > 0 {
            let limit = limits.longPollsPerDevice
            guard deviceLimiter.beginLongPoll(deviceID, limit: limit) else {
                return Self.json(.tooManyRequests, ["error": "too_many_requests", "message": "at most \(limit) long polls at once"],
                                 headers: [.retryAfter: "5"])
            }
        }
        defer { if wait > 0 { deviceLimiter.endLongPoll(deviceID) } }
        while true {
            let seen = watch.current
            let manifest: SyncManifest?
            do { manifest = try await BlockingWork.offload { try self.database.manifest(region: region, installed: installed) } } catch {
                logger.error("manifest failed", metadata: ["error": "\(error)"])
                throw Stop(response: Self.databaseUnavailable())
            }
            guard let manifest else { throw Stop(response: Self.error(.notFound, "no_snapshot", "no snapshot is published for region \(region)")) }
            if !manifest.steps.isEmpty {
                var headers = HTTPFields()
                headers[.contentType] = "application/json"
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: manifest.json)))
            }
            if ContinuousClock.now >= deadline || Task.isCancelled || watch.isClosing { return Response(status: .notModified) }
            await watch.wait(since: seen, until: deadline)
        }
    }

    /// `GET /v1/regions/{region}/snapshots/{id}`: a published file (its device verified by `SyncSignature`).
    func syncFile(_ request: Request, context: HubRequestContext, region: String, snapshotID: String) async throws -> Response {
        guard context.device != nil else { throw Stop(response: Self.error(.unauthorized, "unknown_device", "the request is not signed")) }
        guard Identifiers.isSyncName(region), Identifiers.isSyncName(snapshotID) else {
            throw Stop(response: Self.error(.notFound, "no_snapshot", "no snapshot \(snapshotID) is published for region \(region)"))
        }
        let looked = await BlockingWork.offload { Result { try self.database.publishedSnapshot(snapshotID, region: region) } }
        guard case .success(let found) = looked else { throw Stop(response: Self.databaseUnavailable()) }
        guard let published = found else {
            throw Stop(response: Self.error(.notFound, "no_snapshot", "no snapshot \(snapshotID) is published for region \(region)"))
        }
        var headers = HTTPFields()
        headers[.eTag] = "\"\(published.sha256)\""
        headers[.contentType] = "application/x-ndjson"
        headers[.acceptRanges] = "bytes"
        var from: Int64 = 0
        if let range = request.headers[.range] {
            // Only `bytes=N-` (sync spec §3); any other form is answered with the whole file.
            if range.hasPrefix("bytes="), range.hasSuffix("-"), let n = Int64(range.dropFirst(6).dropLast()), n >= 0 {
                guard n < published.bytes else {
                    headers[.contentRange] = "bytes */\(published.bytes)"
                    return Response(status: .rangeNotSatisfiable, headers: headers)
                }
                from = n
            }
        }
        do {
            let body = try await FileIO().loadFile(path: published.file, range: Int(from)...Int(published.bytes - 1), context: context)
            headers[.contentLength] = "\(published.bytes - from)"
            if from > 0 {
                headers[.contentRange] = "bytes \(from)-\(published.bytes - 1)/\(published.bytes)"
                return Response(status: .partialContent, headers: headers, body: body)
            }
            return Response(status: .ok, headers: headers, body: body)
        } catch {
            logger.error("published file unreadable", metadata: ["snapshot_id": "\(snapshotID)", "error": "\(error)"])
            return Self.json(.serviceUnavailable, ["error": "file_unreadable", "message": "try again later"], headers: [.retryAfter: "60"])
        }
    }
}

extension HTTPField.Name {
    static let xDeviceID = HTTPField.Name("X-Device-Id")!
    static let xDate = HTTPField.Name("X-Date")!
}

