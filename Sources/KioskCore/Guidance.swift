import KioskProtocol
import Foundation

/// What a patient or resident is told to do next (issue 10), for every decision code and
/// every operating failure, in plain words, with the counter from the configuration; and
/// the voice prompt that says it. Nothing here is technical: codes, paths and record
/// numbers go to logs and `kioskctl`, never to these words.
public struct Guidance: Sendable, Equatable {
    /// The headline (large): what happened.
    public var headline: String
    /// What to do next (one or two short sentences).
    public var next: String
    /// The voice prompt: ids of `VoicePrompts.catalogue`, played in order.
    public var voice: [String]

    /// Where the voice and the words differ by kiosk: a hospital sends people to its
    /// cashier, a township hall to its counter (`ScreenSettings.helpDesk`).
    ///
    /// - Parameters:
    ///   - billEnded: the tap ended a hospital bill `refused` (issue 20): the words say to pay
    ///     the whole amount at the cashier.
    ///   - printsSlips: the kiosk has a printer (issue 23): without one, no words and no voice
    ///     promise a slip or a ticket.
    public static func of(code: String, profile: DeviceConfig.Profile, settings: ScreenSettings,
                          patientPaysFen: Int64? = nil, action: String = "check", billEnded: Bool = false,
                          printsSlips: Bool = true) -> Guidance {
        var g = words(code: code, profile: profile, settings: settings, patientPaysFen: patientPaysFen, action: action)
        if !printsSlips { g = withoutSlip(g, code: code, settings: settings) }
        if billEnded && code != "granted" {
            let pays = patientPaysFen.map { "\(Money.yuan($0)) 元" } ?? "全部费用"
            g.next += "请到\(settings.helpDesk)支付 \(pays)。"
            g.voice.append("pay_at_cashier")
        }
        return g
    }

    /// The words of `code` in one line, as `kioskctl` and the HTTP answers print them: the
    /// same texts as the screen and the voice (issue 20 item 7: one source).
    public static func text(code: String, profile: DeviceConfig.Profile = .hospital, settings: ScreenSettings = ScreenSettings(),
                            action: String = "check") -> String {
        let g = of(code: code, profile: profile, settings: settings, action: action)
        return g.headline + "：" + g.next
    }

    /// The words of a kiosk without a printer: the slip and the ticket are not promised; the
    /// applicant is told where to go instead of "take the ticket".
    static func withoutSlip(_ g: Guidance, code: String, settings: ScreenSettings) -> Guidance {
        var g = g
        switch code {
        case "granted":
            g.next = g.next.replacingOccurrences(of: "请取走凭条。", with: "本机不打印凭条，需要凭条请到\(settings.helpDesk)。")
            g.voice.removeAll { $0 == "take_receipt" }
        case "applied":
            g.next = "请带上这张卡，到\(settings.legalAidOffice)办理（\(settings.legalAidHours)）。"
            g.voice = ["applied_no_ticket"]
        default: break
        }
        return g
    }

    static func words(code: String, profile: DeviceConfig.Profile, settings: ScreenSettings, patientPaysFen: Int64?, action: String) -> Guidance {
        let desk = settings.helpDesk
        let civil = "请到民政窗口咨询"
        switch code {
        case "granted":
            let pays = patientPaysFen ?? 0
            return Guidance(headline: "已贴补", next: "您需支付 \(Money.yuan(pays)) 元。请取走凭条。",
                            voice: ["granted", "you_pay"] + VoicePrompts.amount(fen: pays) + ["take_receipt"])
        case "confirm":
            let pays = patientPaysFen ?? 0
            return Guidance(headline: "请核对金额", next: "金额无误请按“确认”，不办理请按“取消”。确认前不会扣款。",
                            voice: ["check_amounts", "you_pay"] + VoicePrompts.amount(fen: pays) + ["press_confirm"])
        case "declined":
            return Guidance(headline: "已取消，没有扣款", next: "账单还在等待。要用惠民卡，请重新放卡。", voice: ["declined"])
        case "confirm_timeout":
            return Guidance(headline: "等待超时，没有扣款", next: "账单还在等待。要用惠民卡，请重新放卡。", voice: ["confirm_timeout"])
        case ReasonCode.wrongPatient.rawValue:
            return Guidance(headline: "这张卡不是本账单的就诊人", next: "请用就诊人本人的惠民卡。没有扣款。", voice: ["wrong_patient"])
        case ReasonCode.legalAidDailyLimit.rawValue:
            return Guidance(headline: "今天不能再申请", next: "每张卡每天最多申请 3 次。请明天再来，或到\(settings.legalAidOffice)咨询。",
                            voice: ["legal_aid_daily_limit"])
        case "eligible":
            if profile == .township {
                return Guidance(headline: "卡片有效", next: "如需申请法律援助，请选择事项。", voice: ["eligible_township"])
            }
            return Guidance(headline: "卡片有效", next: "付款时请在这里刷卡。", voice: ["eligible"])
        case "applied":
            return Guidance(headline: "申请已提交", next: "请取走回执，按回执上的时间到\(settings.legalAidOffice)办理。",
                            voice: ["applied"])
        case "cancelled":
            return Guidance(headline: "申请已撤销", next: "这次申请不办理了，回执作废。", voice: ["cancelled"])
        case ReasonCode.limitExhausted.rawValue:
            return Guidance(headline: "今年额度已用完", next: "本次不能减免。", voice: ["limit_exhausted"])
        case ReasonCode.personSuspended.rawValue:
            return Guidance(headline: "救助已暂停", next: "本卡暂时不能使用，\(civil)。", voice: ["person_suspended"])
        case ReasonCode.personRevoked.rawValue:
            return Guidance(headline: "救助资格已取消", next: "本卡不能使用，\(civil)。", voice: ["person_revoked"])
        case ReasonCode.cardLost.rawValue:
            return Guidance(headline: "此卡已挂失", next: "不能使用，\(civil)。", voice: ["card_lost"])
        case ReasonCode.cardRevoked.rawValue:
            return Guidance(headline: "此卡已注销", next: "不能使用，\(civil)。", voice: ["card_revoked"])
        case ReasonCode.cardReplaced.rawValue:
            return Guidance(headline: "此卡已换新卡", next: "请使用新卡。没有新卡，\(civil)。", voice: ["card_replaced"])
        case ReasonCode.cardExpired.rawValue:
            return Guidance(headline: "此卡已过期", next: "请到民政窗口换卡。", voice: ["card_expired"])
        case ReasonCode.cardUnknown.rawValue:
            return Guidance(headline: "此卡未登记", next: "请到\(desk)咨询。", voice: ["card_unknown"])
        case ReasonCode.cardNotAuthentic.rawValue:
            return Guidance(headline: "此卡验证没有通过", next: "请换一张卡，或到\(desk)咨询。", voice: ["card_not_usable"])
        case ReasonCode.notEligible.rawValue:
            return Guidance(headline: action == "legal_aid" ? "此事项不能凭卡申请" : "本次不能减免",
                            next: action == "legal_aid" ? "请到\(settings.legalAidOffice)咨询。" : "有疑问请到\(desk)。",
                            voice: [action == "legal_aid" ? "matter_not_covered" : "not_eligible"])
        case ReasonCode.cardUnreadable.rawValue, "card_error":
            return Guidance(headline: "没有读到卡", next: "请把卡片放平放好，再试一次。", voice: ["card_unreadable"])
        case ReasonCode.cardRemoved.rawValue:
            return Guidance(headline: "卡片拿开太早", next: "请重新放卡，听到提示前不要拿开。", voice: ["card_removed"])
        case ReasonCode.cardWriteRefused.rawValue:
            return Guidance(headline: "卡片没有写入", next: "没有扣款。请重新放卡再试一次。", voice: ["card_write_refused"])
        case "card_pending":
            return Guidance(headline: "请用上次的卡再刷一次", next: "上次办理没有完成，请把那张卡放上读卡器。", voice: ["card_pending"])
        case "decision_stale":
            return Guidance(headline: "信息已更新", next: "没有扣款。请重新放卡。", voice: ["decision_stale"])
        case "bill_already_subsidised":
            return Guidance(headline: "这张账单已经减免过", next: "不能再次减免，有疑问请到\(desk)。", voice: ["bill_already_subsidised"])
        case ReasonCode.snapshotMissing.rawValue, ReasonCode.snapshotExpired.rawValue, ReasonCode.clockSuspect.rawValue,
             ReasonCode.deviceRetired.rawValue:
            return Guidance(headline: "设备暂停服务", next: "请到\(desk)办理。", voice: ["service_paused"])
        case "pcscd_unavailable":
            return Guidance(headline: "请稍候", next: "设备正在恢复，请稍后再刷卡。", voice: ["please_wait"])
        default:
            // store_error, disk_full, reader_gone, internal_error, …
            return Guidance(headline: "设备暂停服务", next: "请到\(desk)办理。", voice: ["service_paused"])
        }
    }
}

/// Yuan from fen, as people read it: "12.30".
public enum Money {
    /// `fen` as yuan with two decimals (1230 → "12.30", −5 → "-0.05").
    public static func yuan(_ fen: Int64) -> String {
        let f = abs(fen)
        return (fen < 0 ? "-" : "") + "\(f / 100)." + String(format: "%02lld", f % 100)
    }
}

/// Short Mandarin voice prompts (issue 10): generated offline at install time with
/// espeak-ng (`kioskctl voice generate`), or recorded files of the same names dropped into
/// the voice folder (those are kept). Amounts are said from number clips.
public enum VoicePrompts {
    /// id → what is said.
    public static let catalogue: [String: String] = {
        var c: [String: String] = [
            "insert_card": "请刷卡",
            "reading": "正在读卡，请不要拿开",
            "granted": "已贴补",
            "you_pay": "您需支付",
            "take_receipt": "请取走凭条",
            "eligible": "卡片有效，付款时请刷卡",
            "eligible_township": "卡片有效，如需法律援助，请选择事项",
            "applied": "法律援助申请已提交，请取走回执",
            "applied_no_ticket": "法律援助申请已提交，请带卡到法律援助中心办理",
            "cancelled": "申请已撤销",
            "limit_exhausted": "今年额度已用完",
            "person_suspended": "救助已暂停，请到民政窗口咨询",
            "person_revoked": "救助资格已取消，请到民政窗口咨询",
            "card_lost": "此卡已挂失，请到民政窗口咨询",
            "card_revoked": "此卡已注销，请到民政窗口咨询",
            "card_replaced": "此卡已换新卡，请使用新卡",
            "card_expired": "此卡已过期，请到民政窗口换卡",
            "card_not_usable": "此卡不能使用，请到人工窗口咨询",
            "not_eligible": "本次不能减免",
            "card_unreadable": "没有读到卡，请重新放卡",
            "card_removed": "卡片拿开太早，请重新放卡",
            "service_paused": "设备暂停服务，请到人工窗口",
            "please_wait": "请稍候",
            "slip_printed": "请取走状态单",
            "take_card": "请取走卡片",
            "check_amounts": "请核对金额",
            "press_confirm": "金额无误，请按确认",
            "declined": "已取消，没有扣款",
            "confirm_timeout": "等待超时，没有扣款",
            "wrong_patient": "这张卡不是本账单的就诊人",
            "lift_card": "请拿起卡片，再放一次",
            "pay_at_cashier": "请到收费窗口付款",
            "card_unknown": "此卡未登记，请到人工窗口咨询",
            "card_write_refused": "卡片没有写入，没有扣款，请重新放卡",
            "card_pending": "上次办理没有完成，请用那张卡再刷一次",
            "decision_stale": "信息已更新，没有扣款，请重新放卡",
            "bill_already_subsidised": "这张账单已经减免过",
            "matter_not_covered": "此事项不能凭卡申请",
            "legal_aid_daily_limit": "今天不能再申请，请明天再来",
            "confirm_matter": "确认提交请按确认，选错了请按返回",
            "yuan": "元", "jiao": "角", "fen": "分",
            "u10": "十", "u100": "百", "u1000": "千", "u10000": "万",
            "liang": "两",
        ]
        for (d, w) in ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"].enumerated() { c["d\(d)"] = w }
        // Issue 20 item 5: every matter of the legal-aid list is read aloud when focused (a
        // matter outside this list is shown, not said).
        for (code, name) in matters { c["matter_" + code] = name }
        return c
    }()

    /// The matters of 凭卡直接申请法律援助 (the snapshot's `LA-DIRECT`), each with a clip `matter_<code>`.
    public static let matters: [(String, String)] = [
        ("social_insurance", "请求给予社会保险待遇"), ("relief_payment", "请求发放抚恤金、救济金"),
        ("support_payment", "请求给付赡养费、抚养费、扶养费"), ("labor_remuneration", "请求支付劳动报酬"),
        ("injury_compensation", "请求医疗、交通、工伤事故赔偿"), ("agricultural_fraud", "伪劣农药种子化肥坑农"),
        ("environmental_damage", "环境污染损害"), ("domestic_violence", "家庭暴力"),
    ]

    /// Clip ids that say an amount of fen the Chinese way: 12345 → 一百二十三元四角五分;
    /// a lone 2 before a unit is 两 (两元, 两角, 两百, 两千, 两万), never 二元.
    public static func amount(fen: Int64) -> [String] {
        let f = max(0, fen)
        let yuan = f / 100, jiao = f / 10 % 10, cents = f % 10
        var out: [String] = []
        if yuan > 0 || (jiao == 0 && cents == 0) { out += (yuan == 2 ? ["liang"] : integer(yuan)) + ["yuan"] }
        if jiao > 0 { out += [jiao == 2 ? "liang" : "d\(jiao)", "jiao"] } else if cents > 0 && yuan > 0 { out.append("d0") }
        if cents > 0 { out += [cents == 2 ? "liang" : "d\(cents)", "fen"] }
        return out
    }

    /// 0…99,999,999 as clip ids (一千零五, 十二, 三万零二十).
    static func integer(_ n: Int64) -> [String] {
        if n == 0 { return ["d0"] }
        if n >= 10_000 {
            let high = n / 10_000, low = n % 10_000
            var out = (high == 2 ? ["liang"] : integer(high)) + ["u10000"]
            if low > 0 { if low < 1000 { out.append("d0") }; out += belowTenThousand(low, leading: false) }
            return out
        }
        return belowTenThousand(n, leading: true)
    }

    private static func belowTenThousand(_ n: Int64, leading: Bool) -> [String] {
        var out: [String] = []
        var zero = false
        let units: [(Int64, String?)] = [(1000, "u1000"), (100, "u100"), (10, "u10"), (1, nil)]
        var started = false
        for (value, unit) in units {
            let digit = n / value % 10
            if digit == 0 {
                if started { zero = true }
                continue
            }
            if zero { out.append("d0"); zero = false }
            // 十二, not 一十二, when ten is the first place said.
            if !(value == 10 && digit == 1 && !started && leading) {
                // 两百, 两千 at the head of a number; 二 elsewhere (一千二百, 十二).
                out.append(digit == 2 && !started && value >= 100 && leading ? "liang" : "d\(digit)")
            }
            if let unit { out.append(unit) }
            started = true
        }
        return out
    }

    /// The words of a list of clips, for logs and tests.
    public static func words(_ ids: [String]) -> String { ids.map { catalogue[$0] ?? "?" }.joined() }

    /// A safe file name for an id of the catalogue, or nil for anything else (the screen
    /// serves only these).
    public static func fileName(_ id: String) -> String? { catalogue[id] == nil ? nil : id + ".wav" }

    /// Writes a WAV for every prompt that has none in `directory` (recorded files are kept;
    /// `force` regenerates everything) with espeak-ng's Mandarin voice. Returns the ids made.
    public static func generate(into directory: URL, force: Bool = false, espeak: String = "/usr/bin/espeak-ng") throws -> [String] {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var made: [String] = []
        for (id, text) in catalogue.sorted(by: { $0.key < $1.key }) {
            let file = directory.appendingPathComponent(id + ".wav")
            if !force, FileManager.default.fileExists(atPath: file.path) { continue }
            let partial = directory.appendingPathComponent(".\(id).wav.partial")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: espeak)
            p.arguments = ["-v", "cmn", "-s", "140", "-w", partial.path, text]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            do { try p.run() } catch { throw VoiceError.noSynthesiser("\(espeak): \(error)") }
            p.waitUntilExit()
            guard p.terminationStatus == 0, (try? FileManager.default.attributesOfItem(atPath: partial.path)[.size] as? Int) ?? 0 > 44 else {
                try? FileManager.default.removeItem(at: partial)
                throw VoiceError.failed(id, "espeak-ng exited \(p.terminationStatus)")
            }
            if FileManager.default.fileExists(atPath: file.path) { try FileManager.default.removeItem(at: file) }
            try FileManager.default.moveItem(at: partial, to: file)
            made.append(id)
        }
        return made
    }

    /// Why prompts could not be generated: espeak-ng cannot run, or one prompt failed.
    public enum VoiceError: Error, CustomStringConvertible {
        case noSynthesiser(String), failed(String, String)
        /// The failure in one line.
        public var description: String {
            switch self {
            case .noSynthesiser(let why): return "cannot run espeak-ng (apt install espeak-ng): \(why)"
            case .failed(let id, let why): return "prompt \(id): \(why)"
            }
        }
    }
}
