import Foundation
import Hummingbird
import KioskCore
import KioskProtocol
import KioskStore

/// A township terminal's legal-aid application, its withdrawal and the status slip, from the
/// kiosk's own screen only.
struct LegalAidRoutes: Sendable {
    let engine: Engine
    let session: ScreenSession

    func addRoutes(to router: Router<BasicRequestContext>) {
        // A legal-aid application, from the kiosk's own screen only (issue 20 item 6).
        router.post("/api/legal-aid") { request, _ -> Response in
            if let refused = notTheScreen(request, session) { return refused }
            let body: [UInt8]
            switch await jsonBody(request, limit: LegalAidRequest.maximumBodyBytes) {
            case .failure(let f): return json(f.status, ["error": f.body ?? "\(f.status)"])
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
            if let refused = notTheScreen(request, session) { return refused }
            do { try await engine.cancelLegalAid(); return json(.ok, ["status": "withdrawn"]) } catch { return failure(error) }
        }

        // A township resident's status slip of the card on the reader, from the kiosk's own page.
        router.post("/api/status-slip") { request, _ -> Response in
            if let refused = notTheScreen(request, session) { return refused }
            do { return json(.ok, ["status": try await engine.printStatusSlip()]) } catch { return failure(error) }
        }
    }
}
