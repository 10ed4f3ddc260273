import KioskProtocol
import Foundation

/// Sample screen states (issue 10), rendered into pages by `kioskd --preview-screens`: what tests screenshot at every panel size
/// and check for fit, contrast, tap targets and keypad use, and what the README shows. The
/// states are made like the daemon makes them: the same `Guidance`, the same fields.
public enum ScreenSamples {
    static let settings: ScreenSettings = {
        var s = ScreenSettings()
        s.helpDesk = "1 号收费窗口"
        return s
    }()

    static func result(_ action: String, _ code: String, profile: DeviceConfig.Profile, _ edit: (inout ScreenState.Result) -> Void = { _ in }) -> ScreenState.Result {
        let message = Guidance.text(code: code, profile: profile, settings: settings, action: action)
        var r = ScreenState.Result(action: action, code: code, message: message, detail: "", cardNumber: "3307********0017", holder: "王*英",
                                   cardType: profile == .township ? "legal_aid" : "medical")
        edit(&r)
        let g = Guidance.of(code: code, profile: profile, settings: settings, patientPaysFen: r.patientPaysFen, action: action, billEnded: r.billEnded)
        r.headline = g.headline; r.next = g.next; r.voice = g.voice; r.number = 1
        if r.takeCard { r.voice.append("take_card") }
        return r
    }

    static let medical = [
        ScreenState.ProgramLine(code: "HM-SUBSIDY", name: "惠民医疗费用贴补", remainingFen: 30000, limitFen: 60000, usedFen: 30000),
        ScreenState.ProgramLine(code: "HM-CS-OUTPATIENT", name: "集中供养人员门诊费补助", remainingFen: 45000, limitFen: 45000, usedFen: 0),
    ]
    static let legalAid = ScreenState.ProgramLine(code: "LA-DIRECT", name: "凭卡直接申请法律援助", matters: [
        ["code": "social_insurance", "name": "请求给予社会保险待遇"], ["code": "relief_payment", "name": "请求发放抚恤金、救济金"],
        ["code": "support_payment", "name": "请求给付赡养费、抚养费、扶养费"], ["code": "labor_remuneration", "name": "请求支付劳动报酬"],
        ["code": "injury_compensation", "name": "请求医疗、交通、工伤事故赔偿"], ["code": "agricultural_fraud", "name": "伪劣农药种子化肥坑农"],
        ["code": "environmental_damage", "name": "环境污染损害"], ["code": "domestic_violence", "name": "家庭暴力"],
    ])

    /// name → state.
    public static var states: [(String, ScreenState)] {
        func state(_ profile: DeviceConfig.Profile, phase: String = "idle", result: ScreenState.Result? = nil, card: Bool = false,
                   bill: ScreenState.Bill? = nil, lift: Bool = false) -> ScreenState {
            var s = ScreenState(profile: profile.rawValue, institution: profile == .hospital ? "市第一人民医院" : "城关镇便民服务中心",
                                deviceID: "KSK-TEST-0001", helpDesk: settings.helpDesk, helpPhone: "0579-8888 1234", voiceOn: true, volume: 80)
            s.phase = phase; s.result = result; s.cardPresent = card; s.bill = bill; s.liftCard = lift
            return s
        }
        let bill = ScreenState.Bill(billReference: "H-20261122-1", billFen: 12345)
        return [
            ("hospital-idle-bill", state(.hospital, bill: bill)),
            ("hospital-reading", state(.hospital, phase: "reading", card: true, bill: bill)),
            // Issue 20: the pre-settlement, the resting card, the take-card prompt, the bill's refusals.
            ("hospital-confirm", state(.hospital, phase: "confirm", result: result("charge", "confirm", profile: .hospital) {
                $0.billFen = 12345; $0.subsidyFen = 10000; $0.patientPaysFen = 2345; $0.billReference = "H-20261122-1"
                $0.confirmSeconds = 60; $0.programs = [ScreenState.ProgramLine(code: "HM-SUBSIDY", name: "惠民医疗费用贴补", remainingFen: 20000,
                                                                                limitFen: 60000, usedFen: 40000)]
            }, card: true, bill: bill)),
            ("hospital-lift-card", state(.hospital, card: true, bill: bill, lift: true)),
            ("hospital-take-card", state(.hospital, card: true)),
            ("hospital-granted", state(.hospital, phase: "result", result: result("charge", "granted", profile: .hospital) {
                $0.billFen = 12345; $0.subsidyFen = 10000; $0.patientPaysFen = 2345; $0.programs = medical; $0.receipt = "printed"
                $0.takeCard = true; $0.billEnded = true
            }, card: true)),
            ("hospital-limit-exhausted", state(.hospital, phase: "result", result: result("charge", "limit_exhausted", profile: .hospital) {
                $0.billFen = 12345; $0.patientPaysFen = 12345; $0.programs = [medical[0]]; $0.billEnded = true; $0.takeCard = true
            }, card: true)),
            ("hospital-wrong-patient", state(.hospital, phase: "result", result: result("charge", "wrong_patient", profile: .hospital) {
                $0.cardNumber = nil; $0.holder = nil; $0.takeCard = true
            }, card: true, bill: bill)),
            ("hospital-declined", state(.hospital, phase: "result", result: result("charge", "declined", profile: .hospital) {
                $0.billFen = 12345; $0.cardNumber = nil; $0.holder = nil; $0.takeCard = true
            }, card: true, bill: bill)),
            ("hospital-paid-card-taken", state(.hospital, phase: "result", result: result("charge", "granted", profile: .hospital) {
                $0.billFen = 12345; $0.subsidyFen = 10000; $0.patientPaysFen = 2345; $0.billEnded = true; $0.redact()
            })),
            ("hospital-suspended", state(.hospital, phase: "result", result: result("check", "person_suspended", profile: .hospital), card: true)),
            ("hospital-card-lost", state(.hospital, phase: "result", result: result("check", "card_lost", profile: .hospital), card: true)),
            ("hospital-service-paused", state(.hospital, phase: "result", result: result("charge", "clock_suspect", profile: .hospital), card: true)),
            ("township-eligible", state(.township, phase: "result", result: result("check", "eligible", profile: .township) {
                $0.programs = [legalAid, medical[0]]; $0.slip = true
            }, card: true)),
            // The matter's confirmation (the page opens it when a matter is chosen; here at once).
            ("township-legal-aid-confirm", state(.township, phase: "result", result: result("check", "eligible", profile: .township) {
                $0.programs = [legalAid]
            }, card: true)),
            ("township-applied", state(.township, phase: "result", result: result("legal_aid", "applied", profile: .township) {
                $0.programs = [legalAid]; $0.matter = "labor_remuneration"; $0.receipt = "printed"; $0.cancellable = true; $0.takeCard = true
            }, card: true)),
            ("township-daily-limit", state(.township, phase: "result", result: result("legal_aid", "legal_aid_daily_limit", profile: .township) {
                $0.takeCard = true
            }, card: true)),
        ]
    }
}
