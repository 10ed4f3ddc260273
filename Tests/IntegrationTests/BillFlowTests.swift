import BenefitCard
import Foundation
import KioskCore
import KioskStore
import TestVectors
import Testing
import VirtualCard

/// Issue 20: a card is charged only when its holder means it. The real kioskd, pcscd, the
/// card emulator, HTTP on loopback; screen timings divided by ten (`BENEFIT_KIOSK_TEST_FAST_SCREEN`).
extension PCSCIntegrationTests {
    static let fast = ["BENEFIT_KIOSK_TEST_FAST_SCREEN": "1"]
    /// The holder identity numbers (`DF23`) of two vector cards.
    static let idOf0017 = "330782195603121285", idOf0066 = "330782195206300466"

    static func records(_ dir: String) throws -> [StoredRecord] { try Device(stateDir: URL(fileURLWithPath: dir)).store.records() }

    /// A long poll (`GET /api/bills/{ref}?wait=`) by curl on a thread of its own.
    final class LongPoll: @unchecked Sendable {
        // @unchecked: `result` is written once by the worker thread before `done` is
        // signalled, and read only after waiting on `done`.
        private var result: (String, TimeInterval)?
        private let done = DispatchSemaphore(value: 0)
        init(_ d: Daemon, _ reference: String, wait: Int) throws {
            let args = ["-s", "--max-time", "\(wait + 5)", "-H", "Authorization: Bearer \(d.token)", d.base + "/api/bills/\(reference)?wait=\(wait)"]
            let started = Date()
            Thread {
                let out = (try? Harness.exec("/usr/bin/curl", args, timeout: TimeInterval(wait + 10)))?.1 ?? ""
                self.result = (out, Date().timeIntervalSince(started))
                self.done.signal()
            }.start()
        }
        /// The answer and how long it took (bounded by curl's --max-time).
        func answer() -> ([String: Any], TimeInterval) {
            done.wait()
            let (text, took) = result ?? ("", 0)
            return ((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:], took)
        }
    }

    @Test func aRestingCardIsNotChargedAndNothingIsWrittenBefore确认() throws {
        let dir = try provisionedStateDir()
        let d = try Daemon(stateDir: dir, environment: Self.fast)
        let cookie = try d.screenCookie()
        let sse = try ScreenStream(d, seconds: 45)
        let e = Vectors.emulator("3307820000000017")
        try Harness.withCard(e) { _, _ in
            // The previous patient's card rests on the reader; the next bill arrives.
            _ = try d.waitForResult(code: "eligible")
            #expect(try d.post("/api/bills", #"{"bill_reference":"H-REST-1","bill_fen":10000}"#).0 == 202)
            let s = try d.waitForState("lift_card") { $0["lift_card"] as? Bool == true }
            #expect(s["phase"] as? String != "confirm")
            Thread.sleep(forTimeInterval: 1.5)
            #expect(try Self.records(dir).isEmpty)
            #expect(try d.bill("H-REST-1").1["status"] as? String == "waiting")
            #expect(try d.press("confirm", "H-REST-1", cookie: cookie).0 == 409)
            #expect(try d.browse(screenshot: "hospital-lift-card.png").contains("请拿起卡片，再放一次"))
        }
        // Lifted and tapped again: the pre-settlement, then 取消: nothing written, still waiting.
        try Harness.withCard(e) { _, _ in
            let p = try d.waitForResult(code: "confirm")
            #expect(p["bill_fen"] as? Int == 10000 && p["subsidy_fen"] as? Int == 10000 && p["patient_pays_fen"] as? Int == 0)
            #expect(try d.post("/api/bills/H-REST-1/confirm", "{}").0 == 401)   // the bill token cannot confirm
            #expect(try d.press("confirm", "H-OTHER", cookie: cookie).0 == 409)
            // A press meant for other figures (another pre-settlement's number) is refused.
            let shown = try #require(p["confirmation"] as? Int)
            #expect(try d.press("confirm", "H-REST-1", cookie: cookie, confirmation: shown + 1).0 == 409)
            #expect(try d.screenPost("/api/bills/H-REST-1/confirm", "{}", cookie: cookie).0 == 400)
            #expect(try d.press("decline", "H-REST-1", cookie: cookie).0 == 202)
            let r = try d.waitForResult(code: "declined")
            #expect(r["take_card"] as? Bool == true && (r["voice"] as? [String] ?? []).contains("take_card"))
            #expect(try Self.records(dir).isEmpty)
            #expect(try d.bill("H-REST-1").1["status"] as? String == "waiting")
            // Take-card: said with the result and again while the card stays (3 times in all).
            Thread.sleep(forTimeInterval: 3)
            #expect((try d.state()["result"] as? [String: Any])?["code"] as? String == "declined")   // kept while the card stays
        }
        // The card taken: name and card number leave at once, the rest soon after.
        let after = try d.waitForState("the result redacted or gone") {
            guard let r = $0["result"] as? [String: Any] else { return true }
            return r["redacted"] as? Bool == true
        }
        #expect((after["result"] as? [String: Any])?["card_number"] == nil && (after["result"] as? [String: Any])?["holder"] == nil)
        _ = try d.waitForState("the result cleared") { $0["result"] == nil || $0["result"] is NSNull }
        // Tapped again, then no answer: the pre-settlement times out, nothing written. A long
        // poll started before the tap wakes when the bill turns `confirming`.
        let poll = try LongPoll(d, "H-REST-1", wait: 30)
        Thread.sleep(forTimeInterval: 0.5)
        try Harness.withCard(e) { _, _ in
            _ = try d.waitForResult(code: "confirm")
            let (woken, took) = poll.answer()
            #expect(woken["status"] as? String == "confirming" && took < 15, "\(woken) after \(took) s")
            let dom = try d.browse(screenshot: "hospital-confirm.png")
            #expect(dom.contains("您需支付") && dom.contains("惠民卡减免") && dom.contains("今年还可减免") && dom.contains("确认") && dom.contains("取消"))
            _ = try d.waitForState("confirm_timeout", seconds: 25) { ($0["result"] as? [String: Any])?["code"] as? String == "confirm_timeout" }
            #expect(try Self.records(dir).isEmpty)
            #expect(try d.bill("H-REST-1").1["status"] as? String == "waiting")
        }
        // The hospital system deletes it: cancelled, no code.
        #expect(try d.request("DELETE", "/api/bills/current", headers: ["Authorization: Bearer \(d.token)"]).0 == 200)
        let cancelled = try d.bill("H-REST-1")
        #expect(cancelled.1["status"] as? String == "cancelled" && cancelled.1["code"] is NSNull, "\(cancelled)")
        let states = sse.states()
        let takeCard = Set(states.compactMap { s -> Int? in
            guard let r = s["result"] as? [String: Any], r["code"] as? String == "declined", (r["voice"] as? [String] ?? []).contains("take_card") else { return nil }
            return r["number"] as? Int
        })
        #expect(takeCard.count == 3, "take_card said \(takeCard.count) times for the declined result")
        Self.expectOrdered(states)
        #expect(try d.stop().0 == 0)
    }

    @Test func anotherPersonsCardIsRefusedAndTheIdentityNumberIsKeptNowhere() throws {
        let dir = try provisionedStateDir()
        let d = try Daemon(stateDir: dir, environment: Self.fast)
        let cookie = try d.screenCookie()
        let sse = try ScreenStream(d, seconds: 12)
        let body = #"{"bill_reference":"H-PAT-1","bill_fen":2345,"patient_id_number":"\#(Self.idOf0017)"}"#
        let posted = try d.post("/api/bills", body)
        #expect(posted.0 == 202 && !posted.1.contains(Self.idOf0017), "\(posted)")
        // Another person's card (its allowance is used up: no figure may show before the refusal).
        try Harness.withCard(Vectors.emulator("3307820000000066")) { _, _ in
            let r = try d.waitForResult(code: "wrong_patient")
            #expect(r["headline"] as? String == "这张卡不是本账单的就诊人" && r["subsidy_fen"] == nil && (r["programs"] as? [Any] ?? []).isEmpty, "\(r)")
            #expect(try d.bill("H-PAT-1").1["status"] as? String == "waiting")
        }
        #expect(try Self.records(dir).isEmpty)
        // The patient's own card: confirmed, granted.
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            _ = try d.waitForResult(code: "confirm")
            #expect(try d.press("confirm", "H-PAT-1", cookie: cookie).0 == 202)
            _ = try d.waitForResult(code: "granted")
        }
        let granted = try d.bill("H-PAT-1")
        #expect(granted.1["status"] as? String == "granted" && granted.1["subsidy_fen"] as? Int == 2345)
        // The number is in no file of the state folder (store, WAL, logs, receipts), no screen
        // state, no answer, and no record.
        var seen: [String] = []
        let files = FileManager.default.enumerator(atPath: dir)?.compactMap { $0 as? String } ?? []
        for f in files {
            guard let data = FileManager.default.contents(atPath: dir + "/" + f) else { continue }
            if data.range(of: Data(Self.idOf0017.utf8)) != nil || data.range(of: Data(Self.idOf0066.utf8)) != nil { seen.append(f) }
        }
        let outputs = [try d.get("/api/state").1, try d.get("/healthz").1, granted.1.description, d.log] + sse.states().map { "\($0)" }
        for (i, text) in outputs.enumerated() where text.contains(Self.idOf0017) || text.contains(Self.idOf0066) { seen.append("output \(i)") }
        #expect(seen.isEmpty, "the identity number was found in \(seen)")
        #expect(files.contains("kiosk.sqlite") && files.contains { $0.hasSuffix(".escpos") })
        #expect(try d.stop().0 == 0)
    }

    @Test func outcomesRefusedPendingRestartedAndForgottenAfterSevenDays() throws {
        let dir = try provisionedStateDir()
        var d = try Daemon(stateDir: dir, environment: Self.fast)
        let cookie = try d.screenCookie()
        // 停保: the bill ends refused; the patient pays it all at the cashier.
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-STOP-1","bill_fen":5000}"#).0 == 202)
        try Harness.withCard(Vectors.emulator("3307820000000033")) { _, _ in
            let r = try d.waitForResult(code: "person_suspended")
            #expect(r["bill_ended"] as? Bool == true && r["patient_pays_fen"] as? Int == 5000)
            #expect((r["next"] as? String ?? "").contains("支付 50.00 元"), "\(r)")
        }
        let refused = try d.bill("H-STOP-1")
        #expect(refused.1["status"] as? String == "refused" && refused.1["code"] as? String == "person_suspended"
                && refused.1["patient_pays_fen"] as? Int == 5000 && refused.1["subsidy_fen"] as? Int == 0, "\(refused)")
        #expect(try d.state()["bill"] == nil || (try d.state()["bill"] is NSNull))
        // The card taken away while the pre-settlement is on the screen: nothing written, the
        // bill waits. Pulled at the write itself: the kiosk cannot know whether the card holds
        // it, so the bill is pending until that card comes back.
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-PULL-1","bill_fen":5000}"#).0 == 202)
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in _ = try d.waitForResult(code: "confirm") }
        _ = try d.waitForState("the bill waiting again") { ($0["phase"] as? String) != "confirm" }
        #expect(try d.bill("H-PULL-1").1["status"] as? String == "waiting")
        #expect(try d.press("confirm", "H-PULL-1", cookie: cookie).0 == 409)
        try Harness.withCard(Vectors.emulator("3307820000000017", Misbehaviour(pullBeforeWrite: true))) { _, _ in
            _ = try d.waitForResult(code: "confirm")
            #expect(try d.press("confirm", "H-PULL-1", cookie: cookie).0 == 202)
            _ = try d.waitForResult(code: "card_removed")
        }
        let pulled = try d.bill("H-PULL-1")
        #expect(pulled.1["status"] as? String == "pending" && pulled.1["code"] as? String == "card_removed", "\(pulled)")
        #expect(try Self.records(dir).isEmpty)
        // Another card cannot take a bill whose write is torn on the first card: nothing read for it.
        try Harness.withCard(Vectors.emulator("3307820000000058")) { _, _ in
            let r = try d.waitForResult(code: "card_pending")
            #expect(r["subsidy_fen"] == nil, "\(r)")
        }
        #expect(try d.bill("H-PULL-1").1["status"] as? String == "pending")
        #expect(try Self.records(dir).isEmpty)
        // The hospital system cannot delete a bill whose write is torn: only its card resolves it.
        #expect(try d.request("DELETE", "/api/bills/current", headers: ["Authorization: Bearer \(d.token)"]).0 == 409)
        // kioskd restarts: the torn bill is open again, pending, for its card alone.
        #expect(try d.stop().0 == 0)
        d = try Daemon(stateDir: dir, environment: Self.fast)
        // The screen's session survives the restart (its value is kept in the state folder).
        #expect(try d.press("decline", "H-PULL-1", cookie: cookie).0 == 409)
        #expect(try d.press("decline", "H-PULL-1", cookie: "bk_screen=0").0 == 401)
        #expect(try d.bill("H-PULL-1").1["status"] as? String == "pending")
        #expect((try d.state()["bill"] as? [String: Any])?["bill_reference"] as? String == "H-PULL-1")
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            // Its card comes back: the torn write was not on the card (voided), so a new pre-settlement.
            _ = try d.waitForResult(code: "confirm")
            #expect(try d.press("confirm", "H-PULL-1", cookie: cookie).0 == 202)
            _ = try d.waitForResult(code: "granted")
        }
        #expect(try d.bill("H-PULL-1").1["status"] as? String == "granted")
        #expect(try Self.records(dir).filter { $0.kind == .medicalSubsidy }.count == 1)
        // A waiting bill does not survive a restart (its patient's digest went with the process):
        // cancelled, kiosk_restarted; the hospital system posts it again.
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-WAIT-1","bill_fen":5000}"#).0 == 202)
        #expect(try d.stop().0 == 0)
        d = try Daemon(stateDir: dir, environment: Self.fast)
        let restarted = try d.bill("H-WAIT-1")
        #expect(restarted.1["status"] as? String == "cancelled" && restarted.1["code"] as? String == "kiosk_restarted", "\(restarted)")
        #expect(try d.bill("H-STOP-1").1["status"] as? String == "refused")
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-WAIT-1","bill_fen":5000}"#).0 == 202)
        #expect(try d.bill("H-WAIT-1").1["status"] as? String == "waiting")
        let deleted = try d.request("DELETE", "/api/bills/current", headers: ["Authorization: Bearer \(d.token)"])
        #expect(deleted.0 == 200 && deleted.1.contains(#""status":"cancelled""#), "\(deleted)")
        #expect(try d.request("DELETE", "/api/bills/current", headers: ["Authorization: Bearer \(d.token)"]).0 == 404)   // none open
        #expect(try d.stop().0 == 0)
        // Eight days later every outcome is gone.
        d = try Daemon(stateDir: dir, environment: Self.fast.merging(["BENEFIT_KIOSK_TEST_NOW": "2026-11-30T03:00:00Z"]) { $1 })
        #expect(try d.bill("H-STOP-1").0 == 404 && d.bill("H-PULL-1").0 == 404 && d.bill("H-WAIT-1").0 == 404)
        #expect(try d.stop().0 == 0)
    }
}

extension PCSCIntegrationTests {
    /// Issue 20 item 8: a bill shared by two programs prints one slip with two codes; each code,
    /// read back from the printer bytes with zbarimg, verifies as its record's receipt.
    @Test func aTwoProgramBillPrintsOneSlipWithTwoCodes() throws {
        let dir = try provisionedStateDir()
        let d = try Daemon(stateDir: dir, environment: Self.fast)
        let cookie = try d.screenCookie()
        #expect(try d.post("/api/bills", #"{"bill_reference":"H-TWO-1","bill_fen":20000}"#).0 == 202)
        try Harness.withCard(Vectors.emulator("3307820000000058")) { _, _ in
            let p = try d.waitForResult(code: "confirm")
            #expect(p["subsidy_fen"] as? Int == 20000 && p["patient_pays_fen"] as? Int == 0, "\(p)")
            #expect(try d.press("confirm", "H-TWO-1", cookie: cookie).0 == 202)
            let r = try d.waitForResult(code: "granted")
            #expect((r["records"] as? [String])?.count == 2 && r["receipt"] as? String == "printed", "\(r)")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/receipts")
        let slips = files.filter { $0.hasSuffix(".escpos") }
        try #require(slips.count == 1, "\(files)")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/receipts/" + slips[0])))
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir + "/receipts/" + slips[0].replacingOccurrences(of: ".escpos", with: ".txt"))),
                          as: UTF8.self)
        #expect(text.components(separatedBy: "您需支付").count == 2 && text.contains("二维码仅供核验，不是付款码") && text.contains("请保留此凭条"), "\(text)")
        #expect(text.contains("惠民医疗费用贴补") && text.contains("集中供养人员门诊费补助"))
        #expect(bytes.count > 1000)
        let stem = slips[0].replacingOccurrences(of: ".escpos", with: "")
        var verified: [String] = []
        for png in [stem + ".png", stem + "-2.png"] {
            let (s, out, err) = try Harness.run("kioskctl", ["receipt", "verify", "--state-dir", dir, dir + "/receipts/" + png])
            #expect(s == 0, "\(png): \(err)")
            verified.append(out)
        }
        #expect(verified[0].contains("KSK-TEST-0001-1") && verified[1].contains("KSK-TEST-0001-2"), "\(verified)")
        #expect(try d.stop().0 == 0)
    }
}
