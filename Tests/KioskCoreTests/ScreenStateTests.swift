import Foundation
import KioskCore
import Testing

/// The screen's state as the page receives it (issue 22 item 3: screen state in KioskCore).
@Suite struct ScreenStateTests {
    @Test("inlined into the page, no text a card or bill carries can close the script element")
    func inlineLiteralIsScriptSafe() throws {
        var s = ScreenState(profile: "hospital", institution: "</script><script>alert(1)</script>", deviceID: "KSK-TEST-0001")
        s.notice = "a & b \u{2028} <!--"
        let literal = s.inlineScriptLiteral
        for bad in ["<", ">", "&", "\u{2028}"] { #expect(!literal.contains(bad), "\(bad) in \(literal)") }
        // Still the same state once parsed back.
        let back = try JSONDecoder().decode(ScreenState.self, from: Data(literal.utf8))
        #expect(back == s)
    }

    @Test("a result redacted when the card is lifted keeps no card number, holder or programs")
    func redactForgetsThePerson() {
        guard let granted = ScreenSamples.states.first(where: { $0.0 == "hospital-granted" })?.1.result else {
            Issue.record("no granted sample"); return
        }
        #expect(granted.cardNumber != nil && granted.holder != nil && !granted.programs.isEmpty)
        var r = granted
        r.redact()
        #expect(r.cardNumber == nil && r.holder == nil && r.programs.isEmpty && r.redacted)
        #expect(r.patientPaysFen == granted.patientPaysFen, "the cashier still needs what the patient pays")
    }

    @Test("every sample state encodes to the JSON keys the page reads")
    func samplesEncode() throws {
        for (name, state) in ScreenSamples.states {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(state.json.utf8)) as? [String: Any], "\(name)")
            for key in ["phase", "profile", "card_present", "lift_card", "updated_at"] { #expect(o[key] != nil, "\(name): \(key)") }
        }
    }
}
