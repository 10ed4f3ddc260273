import Foundation
import Hummingbird
import KioskCore
import KioskStore
import Prometheus
import ServiceLifecycle

/// The local HTTP API (bound to 127.0.0.1 only): the kiosk screen and its SSE stream, the
/// hospital system's bill intake, health and metrics.
func buildRouter(engine: Engine, hub: ScreenHub, device: Device, registry: PrometheusCollectorRegistry) -> Router<BasicRequestContext> {
    let router = Router()

    @Sendable func json(_ status: HTTPResponse.Status, _ object: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    @Sendable func body(_ request: Request, _ context: BasicRequestContext) async throws -> [String: Any] {
        let buffer = try await request.body.collect(upTo: 64 * 1024)
        guard let o = try? JSONSerialization.jsonObject(with: Data(buffer: buffer)) as? [String: Any] else {
            throw HTTPError(.badRequest, message: "the body is not a JSON object")
        }
        return o
    }

    @Sendable func failure(_ error: Error) -> Response {
        switch error {
        case let e as Engine.ActionError:
            switch e {
            case .billWaiting: return json(.conflict, ["error": e.description])
            case .noCard: return json(.conflict, ["error": e.description])
            case .wrongProfile: return json(.notFound, ["error": e.description])
            case .invalid: return json(.badRequest, ["error": e.description])
            }
        case let e as HTTPError: return json(e.status, ["error": e.body ?? "\(e.status)"])
        default: return json(.internalServerError, ["error": "\(error)"])
        }
    }

    // Screens. The page carries the current state inline, so its first paint is already
    // right (and readable without waiting for the stream); SSE keeps it live after.
    for (path, file, type) in [("/", "index.html", "text/html; charset=utf-8"), ("/app.js", "app.js", "text/javascript; charset=utf-8"),
                               ("/style.css", "style.css", "text/css; charset=utf-8")] {
        router.get(RouterPath(path)) { _, _ -> Response in
            guard let url = Bundle.module.url(forResource: "Screens/\(file)", withExtension: nil), var data = try? Data(contentsOf: url) else {
                return Response(status: .notFound)
            }
            if file == "index.html" {
                let state = await hub.state.json.replacingOccurrences(of: "</", with: "<\\/")
                data = Data(String(decoding: data, as: UTF8.self).replacingOccurrences(of: "/*INITIAL_STATE*/null", with: state).utf8)
            }
            return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }

    router.get("/api/state") { _, _ in json(.ok, (try? JSONSerialization.jsonObject(with: Data(await hub.state.json.utf8))) ?? [:]) }

    router.get("/events") { _, _ -> Response in
        let stream = await hub.subscribe()
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: .init { writer in
            // Ends with the graceful shutdown; a dead client is found by the next write (the hub
            // re-sends the state every 15 s).
            for await state in stream.cancelOnGracefulShutdown() {
                try await writer.write(ByteBuffer(string: "event: state\ndata: \(state.json)\n\n"))
            }
            try await writer.finish(nil)
        })
    }

    // Bill intake from the hospital system (HIS / cashier).
    router.post("/api/bills") { request, context -> Response in
        do {
            struct BillRequest: Decodable { var bill_reference: String; var bill_fen: Int64 }
            let buffer = try await request.body.collect(upTo: 64 * 1024)
            guard let b = try? JSONDecoder().decode(BillRequest.self, from: Data(buffer: buffer)) else {
                return json(.badRequest, ["error": "bill_reference (string) and bill_fen (integer fen) are required"])
            }
            let bill = try await engine.submitBill(reference: b.bill_reference, fen: b.bill_fen)
            return json(.accepted, ["bill_reference": bill.billReference, "bill_fen": bill.billFen, "status": "waiting_for_card"])
        } catch { return failure(error) }
    }

    router.delete("/api/bills/current") { _, _ -> Response in
        do { try await engine.cancelBill(); return json(.ok, ["status": "cancelled"]) } catch { return failure(error) }
    }

    router.post("/api/legal-aid") { request, context -> Response in
        do {
            let o = try await body(request, context)
            guard let matter = o["matter"] as? String else { return json(.badRequest, ["error": "matter is required"]) }
            try await engine.applyLegalAid(matter: matter, phone: o["phone"] as? String)
            return json(.accepted, ["status": "submitted"])
        } catch { return failure(error) }
    }

    router.get("/healthz") { _, _ -> Response in
        var o: [String: Any] = ["device_id": device.config.deviceID, "profile": device.config.profile.rawValue]
        var healthy = true
        do {
            let snapshot = try device.store.installedSnapshot()
            o["snapshot"] = snapshot?.header.snapshotID ?? NSNull()
            o["snapshot_expired"] = snapshot.map { (Timestamp.date($0.header.expiresAt) ?? .distantPast) <= Date() } ?? true
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
        o["pcscd"] = (try? PCSCProbe.available()) ?? false
        o["status"] = healthy ? "ok" : "failing"
        return json(healthy ? .ok : .serviceUnavailable, o)
    }

    router.get("/metrics") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    return router
}

import SmartCard

enum PCSCProbe {
    static func available() throws -> Bool { (try? PCSCContext()) != nil }
}
