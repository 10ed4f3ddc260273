import Foundation
import Hummingbird
import KioskCore
import KioskProtocol
import KioskStore
import Prometheus
import Settlement
import SmartCard

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
    ScreenRoutes(hub: hub, session: session, device: device).addRoutes(to: router)
    BillRoutes(engine: engine, device: device, session: session).addRoutes(to: router)
    LegalAidRoutes(engine: engine, session: session).addRoutes(to: router)
    HealthRoutes(engine: engine, hub: hub, device: device, registry: registry, sync: sync).addRoutes(to: router)
    return router
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
