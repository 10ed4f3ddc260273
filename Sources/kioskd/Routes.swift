import KioskProtocol
import Foundation
import Hummingbird
import KioskCore
import KioskStore
import Prometheus
import ServiceLifecycle
import Settlement

/// The local HTTP API (bound to 127.0.0.1 only): the kiosk screen and its SSE stream, the
/// hospital system's bill intake, health and metrics.
///
/// Who may call what (issue 8 item 3):
/// - every request: `Host` must be this kiosk (`127.0.0.1:PORT` or `localhost:PORT`, so a
///   DNS-rebinding page is refused) and an `Origin`, when sent, must be the kiosk's own page
///   (any other web page is refused): 403;
/// - the bill API (`POST /api/bills`, `DELETE /api/bills/current`): `Authorization: Bearer`
///   with the device's bill API token (`kioskctl bill-api-token`), compared in constant time:
///   401; `POST /api/legal-aid` takes that token or the screen token the kiosk's own page
///   carries (new at every start);
/// - bodies: `Content-Type: application/json` (415), at most 1 KiB (413), exactly the fields
///   named, every one bounded in bytes (400). Headers are bounded by the server (8 KiB each).
func buildRouter(engine: Engine, hub: ScreenHub, device: Device, registry: PrometheusCollectorRegistry, port: Int,
                 session: ScreenSession, sync: SnapshotSync? = nil) -> Router<BasicRequestContext> {
    let router = Router()
    router.add(middleware: LocalOnly(port: port))

    @Sendable func json(_ status: HTTPResponse.Status, _ object: Any, headers: HTTPFields = [:]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        fields[.cacheControl] = "no-store"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// An outcome of the one mapping (`Outcomes`) as an HTTP answer.
    @Sendable func failure(_ error: Error) -> Response {
        if let e = error as? Engine.ActionError { return json(.init(code: e.httpStatus), ["error": e.description]) }
        let r = Outcomes.report(error)
        return json(.init(code: r.httpStatus), ["error": r.code, "message": r.message, "detail": r.detail])
    }

    /// 401 unless the request carries one of `tokens` as `Authorization: Bearer …`.
    @Sendable func unauthorised(_ request: Request, accepting tokens: [String]) -> Response? {
        guard let presented = BearerToken.presented(request.headers[.authorization]),
              tokens.contains(where: { BearerToken.same(presented, $0) }) else {
            return json(.unauthorized, ["error": "Authorization: Bearer <bill API token> is required (kioskctl bill-api-token)"],
                        headers: [.wwwAuthenticate: "Bearer realm=\"kioskd\""])
        }
        return nil
    }

    /// A JSON body: `Content-Type: application/json` (415), at most `limit` bytes (413).
    @Sendable func jsonBody(_ request: Request, limit: Int) async -> Result<[UInt8], HTTPFailure> {
        guard MediaType.isJSON(request.headers[.contentType]) else {
            return .failure(HTTPFailure(status: .unsupportedMediaType, message: "Content-Type must be application/json"))
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            return .failure(HTTPFailure(status: .contentTooLarge, message: "the body is \(length) bytes; at most \(limit)"))
        }
        do {
            let buffer = try await request.body.collect(upTo: limit)
            return .success(Array(buffer: buffer))
        } catch {
            return .failure(HTTPFailure(status: .contentTooLarge, message: "the body is larger than \(limit) bytes"))
        }
    }

    // Screens. The page carries the current state inline, so its first paint is already
    // right (and readable without waiting for the stream); SSE keeps it live after. The state
    // is escaped for a <script> element (ScreenState.inlineScriptLiteral).
    for (path, file, type) in [("/", "index.html", "text/html; charset=utf-8"), ("/app.js", "app.js", "text/javascript; charset=utf-8"),
                               ("/style.css", "style.css", "text/css; charset=utf-8")] {
        router.get(RouterPath(path)) { _, _ -> Response in
            guard let url = Bundle.module.url(forResource: "Screens/\(file)", withExtension: nil), var data = try? Data(contentsOf: url) else {
                return Response(status: .notFound)
            }
            if file == "index.html" {
                let state = await hub.state.inlineScriptLiteral
                data = Data(String(decoding: data, as: UTF8.self).replacingOccurrences(of: "/*INITIAL_STATE*/null", with: state).utf8)
            }
            return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-store", .xContentTypeOptions: "nosniff"],
                            body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }

    router.get("/api/state") { _, _ in json(.ok, (try? JSONSerialization.jsonObject(with: Data(await hub.state.json.utf8))) ?? [:]) }

    /// 401 unless the request comes from the screen's own session (issue 20 item 6).
    @Sendable func notTheScreen(_ request: Request) -> Response? {
        session.holds(request.headers[.cookie]) ? nil
            : json(.unauthorized, ["error": "only the kiosk's own screen may do this (its session: kioskctl screen-url)"])
    }

    // The one-time screen URL (kioskctl screen-url): sets the screen's session cookie.
    router.get("/screen/open") { request, _ -> Response in
        guard let token = request.uri.queryParameters.get("t"), let cookie = session.redeem(token) else {
            return Response(status: .forbidden, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(string: "this screen link is used or expired: run kioskctl screen-url again\n")))
        }
        return Response(status: .seeOther, headers: [.location: "/", .setCookie: cookie, .cacheControl: "no-store"])
    }

    router.get("/events") { request, _ -> Response in
        guard let (id, states) = await hub.subscribe(session: session.holds(request.headers[.cookie])) else {
            return json(.serviceUnavailable, ["error": "too many screen streams (at most \(ScreenHub.maximumStreams))"],
                        headers: [.retryAfter: "5", .connection: "close"])
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: .init { writer in
            // Ends with the graceful shutdown; a dead client is found by the next write (the
            // screen service re-sends the state every 15 s), and its slot is given back.
            do {
                for await state in states.cancelOnGracefulShutdown() {
                    try await writer.write(ByteBuffer(string: "event: state\ndata: \(state.json)\n\n"))
                }
            } catch {
                await hub.unsubscribe(id)
                throw error
            }
            await hub.unsubscribe(id)
            try await writer.finish(nil)
        })
    }

    // Bill intake from the hospital system (HIS / cashier), issue 20: the bill waits for a
    // fresh tap and the patient's 确认; the hospital system reads (or long-polls) its outcome.
    let billTokens = device.billAPIToken.map { [$0] } ?? []
    router.post("/api/bills") { request, _ -> Response in
        if let refused = unauthorised(request, accepting: billTokens) { return refused }
        let body: [UInt8]
        switch await jsonBody(request, limit: BillRequest.maximumBodyBytes) {
        case .failure(let f): return json(f.status, ["error": f.message])
        case .success(let b): body = b
        }
        let bill: BillRequest
        do { bill = try BillRequest.parse(body) } catch let e as BillRequest.ParseError {
            if case .tooLarge = e { return json(.contentTooLarge, ["error": e.description]) }
            return json(.badRequest, ["error": e.description])
        } catch { return json(.badRequest, ["error": "\(error)"]) }
        do {
            let b = try await engine.submitBill(bill)
            return json(.accepted, b.apiObject)
        } catch { return failure(error) }
    }

    router.delete("/api/bills/current") { request, _ -> Response in
        if let refused = unauthorised(request, accepting: billTokens) { return refused }
        do { return json(.ok, try await engine.cancelBill().apiObject) } catch { return failure(error) }
    }

    // Where a bill stands; ?wait=1…60 long-polls until its status changes.
    router.get("/api/bills/:reference") { request, _ -> Response in
        if let refused = unauthorised(request, accepting: billTokens) { return refused }
        guard let reference = BillPath.reference(request.head.path ?? "", suffix: nil) else {
            return json(.badRequest, ["error": "the bill reference must be one percent-encoded path segment"])
        }
        var wait = 0
        if let w = request.uri.queryParameters.get("wait") {
            guard let n = Int(w), (1...60).contains(n) else { return json(.badRequest, ["error": "wait must be 1 to 60 seconds"]) }
            wait = n
        }
        let mark = engine.changes.mark(reference)
        let now = engine.kiosk.clock.now()
        do {
            guard var outcome = try device.store.billOutcome(reference, now: now) else {
                return json(.notFound, ["error": "no bill \(reference) on this kiosk in the last 7 days"])
            }
            if wait > 0, await engine.changes.wait(reference, after: mark, seconds: wait),
               let changed = try device.store.billOutcome(reference, now: engine.kiosk.clock.now()) {
                outcome = changed
            }
            return json(.ok, outcome.apiObject)
        } catch { return failure(error) }
    }

    // 确认 and 取消 of the pre-settlement: the screen's own session only, never the bill
    // token (the hospital system cannot charge a card for the patient).
    for (action, confirm) in [("confirm", true), ("decline", false)] {
        router.post(RouterPath("/api/bills/:reference/\(action)")) { request, _ -> Response in
            if let refused = notTheScreen(request) { return refused }
            guard let reference = BillPath.reference(request.head.path ?? "", suffix: action) else {
                return json(.badRequest, ["error": "the bill reference must be one percent-encoded path segment"])
            }
            let body: [UInt8]
            switch await jsonBody(request, limit: 256) {
            case .failure(let f): return json(f.status, ["error": f.message])
            case .success(let b): body = b
            }
            // The pre-settlement the patient saw, by its number: a press meant for earlier figures is refused.
            guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any], object.count == 1,
                  let number = JSONInteger.value(object["confirmation"]), number > 0 else {
                return json(.badRequest, ["error": "the body is {\"confirmation\": N}, N the pre-settlement's number on the screen"])
            }
            do {
                if confirm {
                    try await engine.confirmBill(reference, confirmation: UInt64(number))
                } else {
                    try await engine.declineBill(reference, confirmation: UInt64(number))
                }
                return json(.accepted, ["status": confirm ? "confirmed" : "declined"])
            } catch { return failure(error) }
        }
    }

    // A legal-aid application, from the kiosk's own screen only (issue 20 item 6).
    router.post("/api/legal-aid") { request, _ -> Response in
        if let refused = notTheScreen(request) { return refused }
        let body: [UInt8]
        switch await jsonBody(request, limit: LegalAidRequest.maximumBodyBytes) {
        case .failure(let f): return json(f.status, ["error": f.message])
        case .success(let b): body = b
        }
        let application: LegalAidRequest
        do { application = try LegalAidRequest.parse(body) } catch { return json(.badRequest, ["error": "\(error)"]) }
        do {
            try await engine.applyLegalAid(matter: application.matter, phone: application.phone)
            return json(.accepted, ["status": "submitted"])
        } catch { return failure(error) }
    }

    // Withdrawing the application just filed, from the kiosk's own page, within cancel_seconds.
    router.post("/api/legal-aid/cancel") { request, _ -> Response in
        if let refused = notTheScreen(request) { return refused }
        do { try await engine.cancelLegalAid(); return json(.ok, ["status": "withdrawn"]) } catch { return failure(error) }
    }

    // A township resident's status slip of the card on the reader, from the kiosk's own page.
    router.post("/api/status-slip") { request, _ -> Response in
        if let refused = notTheScreen(request) { return refused }
        do { return json(.ok, ["status": try await engine.printStatusSlip()]) } catch { return failure(error) }
    }

    // Voice prompts (issue 10): only the catalogue's names, from the state folder's voice/
    // (generated by `kioskctl voice generate`, or recorded files put there).
    router.get("/voice/:name") { _, context -> Response in
        guard let name = context.parameters.get("name"), name.hasSuffix(".wav"),
              let file = VoicePrompts.fileName(String(name.dropLast(4))),
              let data = FileManager.default.contents(atPath: device.stateDir.appendingPathComponent("voice").appendingPathComponent(file).path) else {
            return Response(status: .notFound)
        }
        return Response(status: .ok, headers: [.contentType: "audio/wav", .cacheControl: "max-age=3600", .xContentTypeOptions: "nosniff"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // Liveness for the watchdog's own probe: the event loop answers, nothing else is touched.
    router.get("/livez") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "text/plain", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
    }

    router.get("/healthz") { _, _ -> Response in
        var o: [String: Any] = ["device_id": device.config.deviceID, "profile": device.config.profile.rawValue]
        var healthy = true
        do {
            let snapshot = try device.store.installedSnapshot()
            let clockNow = engine.kiosk.clock.now()
            o["snapshot"] = snapshot?.header.snapshotID ?? NSNull()
            o["snapshot_expired"] = snapshot.map { (Timestamp.date($0.header.expiresAt) ?? .distantPast) <= clockNow } ?? true
            if let issued = snapshot.flatMap({ Timestamp.date($0.header.issuedAt) }) {
                o["snapshot_age_s"] = Int(clockNow.timeIntervalSince(issued))
            }
            o["queued_records"] = try device.store.records(status: "queued", limit: 1_000_000).count
            o["rejected_records"] = try device.store.records(status: "rejected", limit: 1_000_000).count
            o["pending_deductions"] = try device.store.pendingDeductions().count
            let now = engine.kiosk.clock.now()
            let floor = try device.store.clockFloor()
            o["clock_suspect"] = floor.suspicion(at: now) != nil
            if let f = floor.floor { o["clock_floor"] = Timestamp.string(f) }
            if let cert = device.certificate {
                o["certificate_valid_through"] = "\(cert.validThrough)"
                o["certificate_valid"] = cert.isValid(at: now)
            } else {
                o["certificate_valid"] = false
            }
            if let w = engine.kiosk.certificateWarning(now: now) { o["certificate_warning"] = w }
        } catch {
            healthy = false
            o["store_error"] = "\(error)"
        }
        if let sync {
            // Sync spec §4: when the last round was, whether it worked, and why the last one failed.
            let s = await sync.status
            var x: [String: Any] = ["consecutive_failures": s.consecutiveFailures]
            if let t = s.lastAttemptAt { x["last_attempt"] = Timestamp.string(t) }
            if let t = s.lastSuccessAt { x["last_success"] = Timestamp.string(t) }
            if let f = s.lastFailure { x["last_failure"] = f }
            if let c = s.lastFailureCode { x["last_failure_code"] = c }
            o["sync"] = x
        } else {
            o["sync"] = "off"
        }
        o["pcscd"] = (try? PCSCProbe.available()) ?? false
        o["screen_streams"] = await hub.subscriberCount
        if device.config.profile == .hospital { o["bill_api_token"] = device.billAPIToken != nil }
        o["status"] = healthy ? "ok" : "failing"
        return json(healthy ? .ok : .serviceUnavailable, o)
    }

    router.get("/metrics") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    return router
}

struct HTTPFailure: Error {
    var status: HTTPResponse.Status
    var message: String
}

/// Host and Origin (issue 8 item 3): only this kiosk, by its loopback names. A DNS-rebinding
/// page sends its own host name; any web page sends its own origin.
struct LocalOnly: RouterMiddleware {
    typealias Context = BasicRequestContext
    let port: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let host = request.head.authority, Self.isOwnHost(host, port: port) else {
            return Self.forbidden("the Host must be 127.0.0.1:\(port) or localhost:\(port)")
        }
        if let origin = request.headers[.origin], !Self.isOwnOrigin(origin, port: port) {
            return Self.forbidden("requests from other origins are refused")
        }
        return try await next(request, context)
    }

    static func isOwnHost(_ host: String, port: Int) -> Bool {
        let h = host.lowercased()
        return h == "127.0.0.1:\(port)" || h == "localhost:\(port)"
    }

    static func isOwnOrigin(_ origin: String, port: Int) -> Bool {
        let o = origin.lowercased()
        return o == "http://127.0.0.1:\(port)" || o == "http://localhost:\(port)"
    }

    static func forbidden(_ why: String) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: ["error": why])) ?? Data("{}".utf8)
        return Response(status: .forbidden, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

enum BearerToken {
    /// The token of `Authorization: Bearer TOKEN` (at most 256 bytes), or nil.
    static func presented(_ header: String?) -> String? {
        guard let header, header.utf8.count <= 256 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// Compares in time that depends only on the lengths, never on where they differ.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard !y.isEmpty else { return false }
        var diff: UInt8 = x.count == y.count ? 0 : 1
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }

    /// A fresh random token (64 hex digits).
    static func random() -> String {
        var g = SystemRandomNumberGenerator()
        return Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}

enum MediaType {
    /// `application/json`, with parameters (`; charset=utf-8`) or without.
    static func isJSON(_ header: String?) -> Bool {
        guard let header, header.utf8.count <= 128 else { return false }
        let type = header.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        return type == "application/json"
    }
}

/// A legal-aid application as `POST /api/legal-aid` takes it: a JSON object of at most 1 KiB
/// with `matter` (1–64 bytes of a–z, 0–9, `_`) and optionally `phone` (1–20 bytes of 0–9,
/// `+`, `-`, space) and nothing else.
struct LegalAidRequest: Equatable {
    var matter: String
    var phone: String?

    static let maximumBodyBytes = 1024

    struct ParseError: Error, CustomStringConvertible { var description: String }

    static func parse(_ body: [UInt8]) throws -> LegalAidRequest {
        guard body.count <= maximumBodyBytes else { throw ParseError(description: "the body is \(body.count) bytes; at most \(maximumBodyBytes)") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw ParseError(description: "the body is not a JSON object")
        }
        let extra = Set(object.keys).subtracting(["matter", "phone"])
        guard extra.isEmpty else { throw ParseError(description: "unknown fields: \(extra.sorted().joined(separator: ", "))") }
        guard let matter = object["matter"] as? String, (1...64).contains(matter.utf8.count),
              matter.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }) else {
            throw ParseError(description: "matter must be 1 to 64 bytes of a-z, 0-9 and _")
        }
        var phone: String?
        switch object["phone"] {
        case nil, is NSNull: phone = nil
        case let p as String:
            guard (1...20).contains(p.utf8.count), p.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x20 }) else {
                throw ParseError(description: "phone must be 1 to 20 bytes of 0-9, +, - and spaces")
            }
            phone = p
        default:
            throw ParseError(description: "phone must be a string")
        }
        return LegalAidRequest(matter: matter, phone: phone)
    }
}

import SmartCard

enum PCSCProbe {
    static func available() throws -> Bool { (try? PCSCContext()) != nil }
}

/// A bill reference from the raw request path `/api/bills/{reference}[/suffix]`: one
/// percent-encoded segment, decoded, checked as `BillError.check` does.
enum BillPath {
    static func reference(_ rawPath: String, suffix: String?) -> String? {
        let path = rawPath.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let prefix = "/api/bills/"
        guard path.hasPrefix(prefix) else { return nil }
        var segment = String(path.dropFirst(prefix.count))
        if let suffix {
            guard segment.hasSuffix("/" + suffix) else { return nil }
            segment = String(segment.dropLast(suffix.count + 1))
        }
        guard !segment.isEmpty, !segment.contains("/"), let decoded = segment.removingPercentEncoding,
              (try? BillError.check(billFen: 1, billReference: decoded)) != nil else { return nil }
        return decoded
    }
}
