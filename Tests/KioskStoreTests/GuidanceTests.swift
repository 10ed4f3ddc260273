import KioskProtocol
import Foundation
import KioskCore
import TestVectors
import Testing

/// Issue 10: every refusal says what to do next in plain words, with the configured counter,
/// and has its voice prompt; the prompts are real speech, not silence.
@Suite struct GuidanceTests {
    static let operating = ["applied", "cancelled", "pcscd_unavailable", "store_error", "disk_full", "reader_gone", "internal_error",
                            "card_error", "bill_already_subsidised", "card_pending", "decision_stale", "confirm", "declined", "confirm_timeout"]

    @Test("every decision and operating code, on both kinds of kiosk, says what to do next with a prompt of the catalogue")
    func everyCodeHasGuidanceAndVoice() {
        var settings = ScreenSettings()
        settings.helpDesk = "3 号收费窗口"
        for profile in [DeviceConfig.Profile.hospital, .township] {
            for code in ReasonCode.allCases.map(\.rawValue) + Self.operating {
                for action in ["check", "charge", "legal_aid"] {
                    let g = Guidance.of(code: code, profile: profile, settings: settings, patientPaysFen: 2345, action: action)
                    #expect(!g.headline.isEmpty && !g.next.isEmpty && !g.voice.isEmpty, "\(code)")
                    for id in g.voice { #expect(VoicePrompts.catalogue[id] != nil, "\(code): prompt \(id) is not in the catalogue") }
                    // Plain words: no codes, no English, no technical marks.
                    let words = g.headline + g.next
                    #expect(!words.unicodeScalars.contains { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || $0 == "_" || $0 == "/" },
                            "\(code): \(words)")
                }
            }
        }
        let paused = ["snapshot_expired", "clock_suspect", "store_error", "device_retired"]
        for code in paused {
            #expect(Guidance.of(code: code, profile: .hospital, settings: settings).next.contains("3 号收费窗口"), "\(code)")
        }
        #expect(Guidance.of(code: "person_suspended", profile: .hospital, settings: settings).next.contains("请到民政窗口咨询"))
        #expect(Guidance.of(code: "card_lost", profile: .hospital, settings: settings).headline == "此卡已挂失")
        #expect(Guidance.of(code: "limit_exhausted", profile: .hospital, settings: settings).next == "本次不能减免。")
        // Issue 20: a refusal that ends the bill says where to pay the whole amount.
        let ended = Guidance.of(code: "limit_exhausted", profile: .hospital, settings: settings, patientPaysFen: 12345, action: "charge", billEnded: true)
        #expect(ended.next.contains("3 号收费窗口支付 123.45 元") && ended.voice.last == "pay_at_cashier", "\(ended)")
        let granted = Guidance.of(code: "granted", profile: .hospital, settings: settings, patientPaysFen: 2345)
        #expect(granted.next.contains("23.45") && VoicePrompts.words(granted.voice) == "已贴补您需支付二十三元四角五分请取走凭条")
        let confirm = Guidance.of(code: "confirm", profile: .hospital, settings: settings, patientPaysFen: 200)
        #expect(VoicePrompts.words(confirm.voice) == "请核对金额您需支付两元金额无误，请按确认", "\(confirm)")
    }

    /// Issue 20 item 7: codes of different meaning never share their words; full-width
    /// punctuation in Chinese text (no ASCII comma, full stop, colon or parenthesis).
    @Test("every code has words of its own, in full-width punctuation")
    func distinctWords() {
        let settings = ScreenSettings()
        // Codes that mean the same to the person at the counter may share their words.
        let same: [Set<String>] = [["snapshot_missing", "snapshot_expired", "clock_suspect", "device_retired", "store_error", "disk_full",
                                    "internal_error", "reader_gone"], ["card_unreadable", "card_error"]]
        let codes = ReasonCode.allCases.map(\.rawValue) + Self.operating
        var seen: [String: String] = [:]
        for code in codes {
            let g = Guidance.of(code: code, profile: .hospital, settings: settings, patientPaysFen: 100, action: "charge")
            let words = g.headline + "|" + g.next
            if let other = seen[words], !same.contains(where: { $0.contains(code) && $0.contains(other) }) {
                Issue.record("\(code) and \(other) say the same: \(words)")
            }
            seen[words] = seen[words] ?? code
            let chinese = g.headline + g.next
            #expect(!chinese.contains(",") && !chinese.contains(". ") && !chinese.contains("(") && !chinese.contains(":"), "\(code): \(chinese)")
            #expect(!chinese.contains("二元"), "\(code): \(chinese)")
        }
    }

    /// Issue 20 item 3: which outcome ends a bill and which leaves it waiting (fails closed).
    @Test("the outcome table of a hospital bill")
    func billOutcomeTable() {
        let ending = ["person_suspended", "person_revoked", "card_lost", "card_revoked", "card_replaced", "card_expired", "card_unknown",
                      "not_eligible", "limit_exhausted", "device_retired", "snapshot_missing", "snapshot_expired", "store_error", "disk_full",
                      "bill_already_subsidised", "something_nobody_planned"]
        for code in ending { #expect(BillRules.status(afterCode: code, cardOnlyClock: false) == .refused, "\(code)") }
        let retry = ["card_unreadable", "card_removed", "card_not_authentic", "card_write_refused", "wrong_patient", "pcscd_unavailable"]
        for code in retry { #expect(BillRules.status(afterCode: code, cardOnlyClock: false) == .waiting, "\(code)") }
        #expect(BillRules.status(afterCode: "clock_suspect", cardOnlyClock: false) == .refused)
        #expect(BillRules.status(afterCode: "clock_suspect", cardOnlyClock: true) == .waiting)
        #expect(BillRules.ending.isDisjoint(with: BillRules.retry))
    }

    @Test("amounts are said the Chinese way", arguments: [
        (Int64(12345), "一百二十三元四角五分"), (60000, "六百元"), (1005, "十元零五分"), (100500, "一千零五元"), (3002000, "三万零二十元"),
        (0, "零元"), (50, "五角"), (5, "五分"), (110000, "一千一百元"), (1100000, "一万一千元"), (1200000000, "一千二百万元"), (200, "两元"),
        (20000, "两百元"), (22, "两角两分"), (2200, "二十二元"), (2000000, "两万元"),
        (1000, "十元"), (1900, "十九元"), (10010000, "十万零一百元"),
    ])
    func amounts(fen: Int64, said: String) {
        #expect(VoicePrompts.words(VoicePrompts.amount(fen: fen)) == said)
    }

    @Test("screen settings: defaults when absent, bounds refused")
    func settings() throws {
        let d = try JSONDecoder().decode(ScreenSettings.self, from: Data("{}".utf8))
        #expect(d == ScreenSettings() && d.resultSeconds == 30 && d.voice && d.volume == 80)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ScreenSettings.self, from: Data(#"{"volume":150}"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ScreenSettings.self, from: Data(#"{"result_seconds":0}"#.utf8)) }
        let custom = try JSONDecoder().decode(ScreenSettings.self, from: Data(#"{"help_desk":"2 号窗口","voice":false}"#.utf8))
        #expect(custom.helpDesk == "2 号窗口" && !custom.voice && custom.legalAidOffice == ScreenSettings().legalAidOffice)
    }

    /// `sox FILE -n stat`: (length in seconds, RMS amplitude).
    static func stat(_ file: URL) throws -> (length: Double, rms: Double) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sox")
        p.arguments = [file.path, "-n", "stat"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        func value(_ label: String) -> Double {
            text.split(separator: "\n").first { $0.hasPrefix(label) }.flatMap { Double($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) } ?? -1
        }
        return (value("Length (seconds)"), value("RMS     amplitude"))
    }

    @Test("espeak-ng makes every prompt, each real speech (sox stat), and a recorded file put there is kept")
    func generatedPromptsAreSpeech() async throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("voice-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        // A recorded prompt (here: one second of a tone from sox) is the technician's: kept.
        let recorded = dir.appendingPathComponent("insert_card.wav")
        let sox = Process()
        sox.executableURL = URL(fileURLWithPath: "/usr/bin/sox")
        sox.arguments = ["-n", "-r", "16000", "-c", "1", recorded.path, "synth", "1", "sine", "440"]
        try sox.run(); sox.waitUntilExit()
        let before = try Data(contentsOf: recorded)
        let made = try await onOwnThread { try VoicePrompts.generate(into: dir) }
        #expect(made.count == VoicePrompts.catalogue.count - 1 && !made.contains("insert_card"))
        #expect(try Data(contentsOf: recorded) == before)
        let stats = try await onOwnThread { try VoicePrompts.catalogue.keys.map { ($0, try Self.stat(dir.appendingPathComponent("\($0).wav"))) } }
        for (id, (length, rms)) in stats {
            #expect(length > 0.1 && rms > 0.01, "\(id).wav is silence or empty: \(length) s, RMS \(rms)")
        }
        // Silence is caught.
        let silent = dir.appendingPathComponent("silent.wav")
        let s = Process()
        s.executableURL = URL(fileURLWithPath: "/usr/bin/sox")
        s.arguments = ["-n", "-r", "16000", "-c", "1", silent.path, "trim", "0", "1"]
        try s.run(); s.waitUntilExit()
        #expect(try Self.stat(silent).rms < 0.01)
        // A synthesiser that is not there is a clear error, not an empty folder.
        #expect(throws: VoicePrompts.VoiceError.self) { try VoicePrompts.generate(into: dir, force: true, espeak: "/nonexistent/espeak-ng") }
    }
}
