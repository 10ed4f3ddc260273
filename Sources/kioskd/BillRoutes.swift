import Foundation
import Hummingbird
import KioskCore
import KioskProtocol
import KioskStore

/// The hospital system's bill API (issue 20) and the screen's 确认 / 取消 of a pre-settlement.
struct BillRoutes: Sendable {
    let engine: Engine
    let device: Device
    let session: ScreenSession

    func addRoutes(to router: Router<BasicRequestContext>) {
        addBillAPI(to: router)
        addConfirmation(to: router)
    }

    /// The hospital system's bill API: submit, cancel and read a bill, with the bill token.
    private func addBillAPI(to router: Router<BasicRequestContext>) {
        // Bill intake from the hospital system (HIS / cashier), issue 20: the bill waits for a
        // fresh tap and the patient's 确认; the hospital system reads (or long-polls) its outcome.
        let billTokens = device.billAPIToken.map { [$0] } ?? []
        router.post("/api/bills") { request, _ -> Response in
            if let refused = unauthorised(request, accepting: billTokens) { return refused }
            let body: [UInt8]
            switch await jsonBody(request, limit: BillRequest.maximumBodyBytes) {
            case .failure(let f): return json(f.status, ["error": f.body ?? "\(f.status)"])
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
    }

    /// The screen's 确认 and 取消 of a pre-settlement, with the screen's session.
    private func addConfirmation(to router: Router<BasicRequestContext>) {
        // 确认 and 取消 of the pre-settlement: the screen's own session only, never the bill
        // token (the hospital system cannot charge a card for the patient).
        for (action, confirm) in [("confirm", true), ("decline", false)] {
            router.post(RouterPath("/api/bills/:reference/\(action)")) { request, _ -> Response in
                if let refused = notTheScreen(request, session) { return refused }
                guard let reference = BillPath.reference(request.head.path ?? "", suffix: action) else {
                    return json(.badRequest, ["error": "the bill reference must be one percent-encoded path segment"])
                }
                let body: [UInt8]
                switch await jsonBody(request, limit: 256) {
                case .failure(let f): return json(f.status, ["error": f.body ?? "\(f.status)"])
                case .success(let b): body = b
                }
                // The pre-settlement the patient saw, by its number: a press meant for earlier figures is refused.
                let number: UInt64
                do { number = try ConfirmationRequest.parse(body).confirmation } catch { return json(.badRequest, ["error": "\(error)"]) }
                do {
                    if confirm {
                        try await engine.confirmBill(reference, confirmation: number)
                    } else {
                        try await engine.declineBill(reference, confirmation: number)
                    }
                    return json(.accepted, ["status": confirm ? "confirmed" : "declined"])
                } catch { return failure(error) }
            }
        }
    }
}
