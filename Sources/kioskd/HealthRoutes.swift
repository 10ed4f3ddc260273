import Foundation
import Hummingbird
import KioskCore
import KioskProtocol
import KioskStore
import Prometheus
import Settlement

/// Liveness for the watchdog, health for the technician and monitoring, Prometheus metrics.
struct HealthRoutes: Sendable {
    let engine: Engine
    let hub: ScreenHub
    let device: Device
    let registry: PrometheusCollectorRegistry
    let sync: SnapshotSync?

    func addRoutes(to router: Router<BasicRequestContext>) {
        // Liveness for the watchdog's own probe: the event loop answers, nothing else is touched.
        router.get("/livez") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }

        router.get("/healthz") { _, _ -> Response in
            let report = HealthReport.read(engine.kiosk)
            var o: [String: Any] = report.fields
            let healthy = report.healthy
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
            o["status"] = healthy ? "ok" : "failing"
            return json(healthy ? .ok : .serviceUnavailable, o)
        }

        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
    }
}
