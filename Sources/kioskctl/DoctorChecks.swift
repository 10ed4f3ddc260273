import AsyncHTTPClient
import NIOCore
import Foundation
import KioskCore
import KioskProtocol
import Receipts
import Settlement
import SmartCard

/// The checks behind `kioskctl doctor`, in the order a technician fixes things: the card
/// service and reader, the card, the printer, the certificate, the snapshot, the hub and
/// the clock, the bill token, the disk, the screen and its font, the voice.
struct DoctorChecks: Sendable {
    let stateDir: URL
    let probe: DoctorProbe

    /// Every check; `testPage` prints a page, `sound` plays a prompt.
    func run(testPage: Bool = false, sound: Bool = false) async -> [Finding] {
        var findings: [Finding] = []
        let readers = pcscd(&findings)
        var device: Device?
        do { device = try Device(stateDir: stateDir) } catch {
            findings.append(Finding(check: "device", level: .failed, words: "\(error)"))
        }
        if let readers { findings += reader(readers, configured: device?.config.reader) }
        if let device {
            findings.append(card(device, readers: readers ?? []))
            findings += printer(device, testPage: testPage)
            findings.append(certificate(device))
            findings.append(snapshot(device))
            findings += await hub(device)
            findings.append(billToken(device))
            findings.append(disk(device))
        }
        findings += screen()
        if let device { findings += voice(device, play: sound) } else if sound {
            findings.append(Finding(check: "sound", level: .failed, words: "no device here, so no voice prompts to play"))
        }
        return findings
    }

    // MARK: card service, reader, card

    /// pcscd answers: the readers it knows (nil when it does not answer).
    func pcscd(_ findings: inout [Finding]) -> [String]? {
        do {
            let readers = try PCSCContext().readers()
            findings.append(Finding(check: "pcscd", level: .ok, words: "the card service (pcscd) answers; readers: "
                                    + (readers.isEmpty ? "none" : readers.joined(separator: ", "))))
            return readers
        } catch {
            findings.append(Finding(check: "pcscd", level: .failed,
                                    words: "the card service (pcscd) does not answer: start it (systemctl start pcscd.socket); no card can be read"))
            return nil
        }
    }

    /// The configured reader is connected (or, with none configured, some reader is).
    func reader(_ readers: [String], configured: String?) -> [Finding] {
        let list = readers.isEmpty ? "none" : readers.joined(separator: ", ")
        if let configured {
            guard readers.contains(configured) else {
                return [Finding(check: "reader", level: .failed, words: "the configured reader \"\(configured)\" is not connected (connected: \(list)); "
                                + "plug it in, or provision again with --reader NAME")]
            }
            return [Finding(check: "reader", level: .ok, words: "\"\(configured)\" is connected")]
        }
        let usable = readers.filter(filter.accepts)
        guard !usable.isEmpty else {
            return [Finding(check: "reader", level: .failed, words: "no card reader is connected (readers: \(list)); plug one in (is libccid installed?)")]
        }
        return [Finding(check: "reader", level: .warning, words: "no reader configured: any of \(usable.joined(separator: ", ")) is used; "
                        + "name one with kioskctl provision --reader NAME")]
    }

    var filter: ReaderFilter {
        probe.virtualReaders ? ReaderFilter(allowVirtual: true) : .fromEnvironment
    }

    /// The card on the reader, if there is one, answers and authenticates.
    func card(_ device: Device, readers: [String]) -> Finding {
        let candidates = device.config.reader.map { [$0] } ?? readers.filter(filter.accepts)
        guard let ctx = try? PCSCContext(),
              let name = candidates.first(where: { (try? ctx.readerState($0).cardPresent) == true }) else {
            return Finding(check: "card", level: .skipped, words: "no card on the reader (put a card on it to check one)")
        }
        let kiosk = Kiosk(device: device, clock: KioskClock(now: probe.now))
        do {
            let outcome = try ctx.connect(reader: name).withTransaction { try kiosk.check($0) }
            let number = Masking.cardNumber(outcome.card.facts.cardNumber)
            return Finding(check: "card", level: .ok, words: "card \(number) on \"\(name)\" answers and is authentic; "
                           + "its status: \(outcome.decision.code.rawValue)")
        } catch {
            let report = Outcomes.report(error)
            return Finding(check: "card", level: .failed, words: "the card on \"\(name)\" does not answer as it should: \(report.code) (\(report.detail))")
        }
    }

    // MARK: printer

    /// The printer's status by DLE EOT (and a test page when asked).
    func printer(_ device: Device, testPage: Bool) -> [Finding] {
        let spec = device.config.printer
        guard device.config.printsSlips else {
            return [Finding(check: "printer", level: .skipped, words: "no printer (provisioned --printer none): the screen promises no slip")]
        }
        var findings: [Finding] = []
        do {
            let transport = try Printer.parse(spec: spec, timeout: 3)
            if let file = transport as? FilePrinter {
                let folder = file.mode == .folder ? file.url : file.url.deletingLastPathComponent()
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                let trial = folder.appendingPathComponent(".doctor-\(getpid())")
                guard FileManager.default.createFile(atPath: trial.path, contents: Data("x".utf8)) else {
                    throw PrinterError.unreachable("cannot write in \(folder.path)")
                }
                try? FileManager.default.removeItem(at: trial)
                findings.append(Finding(check: "printer", level: .warning, words: "receipts go to files in \(folder.path), not to paper "
                                        + "(tests and training); provision --printer device:/dev/usb/lp0 or tcp:HOST:9100"))
            } else if let status = try transport.status() {
                try status.check()
                findings.append(Finding(check: "printer", level: status.isPaperNearEnd ? .warning : .ok,
                                        words: "\(spec) is online" + (status.isPaperNearEnd ? "; the paper roll is nearly out" : ", paper loaded")))
            } else {
                findings.append(Finding(check: "printer", level: .ok, words: "\(spec) takes bytes (it cannot report paper or cover)"))
            }
        } catch {
            findings.append(Finding(check: "printer", level: .failed, words: "\(spec): \(error)"))
            return findings
        }
        if testPage { findings.append(printTestPage(device)) }
        return findings
    }

    func printTestPage(_ device: Device) -> Finding {
        let now = probe.now()
        let paper = device.config.paperWidth
        let ruler = String(repeating: "-", count: paper == .mm80 ? 48 : 32)
        let lines = ["打印测试页 TEST PAGE", ruler, "设备 \(device.config.deviceID)", "机构 \(device.config.institution)",
                     "纸宽 \(paper.rawValue) mm", "时间 \(ReceiptFormat.chinaTime(now))", ruler, "本页不是凭条"]
        let outcome = ReceiptDesk(device: device).printSlip(lines: lines, now: now)
        if case .failed(let why) = outcome { return Finding(check: "test page", level: .failed, words: "not printed: \(why)") }
        return Finding(check: "test page", level: .ok, words: outcome.text + ": check the page is whole and the Chinese is readable")
    }

    // MARK: certificate, snapshot

    /// The device certificate: installed, valid, days left (a warning under 30).
    func certificate(_ device: Device) -> Finding {
        guard let cert = device.certificate else {
            return Finding(check: "certificate", level: .failed, words: "no device certificate: every subsidy is refused (device_retired); "
                           + "kioskctl certificate request, then kioskctl certificate install FILE")
        }
        let now = probe.now()
        guard now >= cert.notBefore else {
            return Finding(check: "certificate", level: .failed, words: "valid only from \(cert.validFrom): is the clock right?")
        }
        guard now < cert.notAfter else {
            return Finding(check: "certificate", level: .failed, words: "ran out on \(cert.validThrough): every subsidy is refused; kioskctl certificate renew")
        }
        let days = Int(cert.notAfter.timeIntervalSince(now) / 86_400)
        return Finding(check: "certificate", level: days < 30 ? .warning : .ok,
                       words: "valid through \(cert.validThrough), \(days) days left" + (days < 30 ? ": renew it (kioskctl certificate renew)" : ""))
    }

    /// The installed snapshot: its region, age and expiry.
    func snapshot(_ device: Device) -> Finding {
        guard let s = try? device.store.installedSnapshot() else {
            let region = device.config.region.map { "region \($0)" } ?? "no region provisioned"
            return Finding(check: "snapshot", level: .failed, words: "no snapshot installed (\(region)): nothing can be decided; "
                           + "kioskctl snapshot sync, or kioskctl snapshot install FILE")
        }
        let now = probe.now()
        let h = s.header
        if let region = device.config.region, region != h.region {
            return Finding(check: "snapshot", level: .failed, words: "the installed snapshot is region \(h.region), the kiosk syncs \(region)")
        }
        let expires = Timestamp.date(h.expiresAt) ?? .distantPast
        let age = Int(now.timeIntervalSince(Timestamp.date(h.issuedAt) ?? now) / 3_600)
        guard now < expires else {
            return Finding(check: "snapshot", level: .failed, words: "\(h.snapshotID) expired \(h.expiresAt): no subsidy until a newer one syncs")
        }
        let left = Int(expires.timeIntervalSince(now) / 3_600)
        return Finding(check: "snapshot", level: left < 48 ? .warning : .ok,
                       words: "\(h.snapshotID), region \(h.region), issued \(age) h ago, expires in \(left) h; \(s.records) records")
    }
}

extension DoctorChecks {
    // MARK: hub and clock

    /// The hub answers (`GET /v1/health`) over the provisioned TLS trust, and its clock
    /// (the `Date` header) agrees with the kiosk's.
    func hub(_ device: Device) async -> [Finding] {
        let url = device.config.hubURL.hasSuffix("/") ? String(device.config.hubURL.dropLast()) : device.config.hubURL
        let tls = url.lowercased().hasPrefix("https://")
        let client: HTTPClient
        do { client = try Uploader.httpClient(hubCAPEM: device.config.hubCAPEM) } catch {
            return [Finding(check: "hub", level: .failed, words: "the hub's CA cannot be used: \(error); provision again with a valid --hub-ca")]
        }
        let timeout = probe.hubTimeout
        let sent = probe.now()
        // The client is Uploader's shared one for this CA (never shut down here).
        let answer = await DoctorChecks.ask(client, url: url + "/v1/health", within: timeout)
        switch answer {
        case .failure(let error):
            let why = error is HubProbeTimeout ? "no answer within \(timeout)" : "\(error)"
            return [Finding(check: "hub", level: .failed, words: "\(url) cannot be reached: \(why); records queue on the kiosk until it can")]
        case .success(let r) where r.status != 200:
            return [Finding(check: "hub", level: .failed, words: "\(url) answered HTTP \(r.status) to its health check")]
        case .success(let r):
            var findings = [Finding(check: "hub", level: tls ? .ok : .warning,
                                    words: tls ? "\(url) answers over TLS" + (device.config.hubCAPEM == nil ? " (system roots)" : " (the provisioned CA)")
                                               : "\(url) answers over plain HTTP (loopback only: tests and the demo)")]
            findings.append(clockSkew(hubDate: r.date, sent: sent))
            return findings
        }
    }

    /// The kiosk's clock against the hub's `Date` header: within a minute is right, over
    /// five minutes is wrong.
    func clockSkew(hubDate: String?, sent: Date) -> Finding {
        guard let hubDate, let hub = DoctorChecks.httpDate(hubDate) else {
            return Finding(check: "clock", level: .warning, words: "the hub sent no readable Date header; the clock is not compared")
        }
        let skew = Int((sent.timeIntervalSince(hub)).rounded())
        let words = skew == 0 ? "agrees with the hub's (within a second)"
            : "is \(abs(skew)) s \(skew > 0 ? "ahead of" : "behind") the hub's"
        let level: Finding.Level = abs(skew) <= 60 ? .ok : abs(skew) <= 300 ? .warning : .failed
        return Finding(check: "clock", level: level, words: "the kiosk's clock \(words)" + (level == .ok ? "" : ": set the time (timedatectl, NTP)"))
    }

    /// An HTTP date (`Sun, 06 Dec 2026 18:00:00 GMT`).
    static func httpDate(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: s)
    }

    // MARK: bill token, disk

    /// A hospital kiosk has the bill API's token.
    func billToken(_ device: Device) -> Finding {
        guard device.config.profile == .hospital else {
            return Finding(check: "bill token", level: .skipped, words: "a township terminal takes no bills")
        }
        guard device.billAPIToken != nil else {
            return Finding(check: "bill token", level: .failed, words: "no bill API token: the hospital system cannot post bills; "
                           + "kioskctl bill-api-token --create, then give it to the hospital system")
        }
        return Finding(check: "bill token", level: .ok, words: "present (kioskctl bill-api-token prints it)")
    }

    /// Room for the store to grow and a full snapshot to download and install beside the
    /// installed one (the download and the new generation: twice its size).
    func disk(_ device: Device) -> Finding {
        let fm = FileManager.default
        let db = stateDir.appendingPathComponent("kiosk.sqlite").path
        let store = [db, db + "-wal"].compactMap { (try? fm.attributesOfItem(atPath: $0))?[.size] as? Int64 }.reduce(0, +)
        let records = (try? device.store.installedSnapshot())?.records ?? 0
        let snapshot = max(Int64(records) * 400, 64 << 20)
        let need = 2 * snapshot + store / 4
        guard let free = probe.freeBytes(stateDir.path) else {
            return Finding(check: "disk", level: .failed, words: "cannot read the free space of \(stateDir.path)")
        }
        let mb = { (b: Int64) in "\(b >> 20) MB" }
        let words = "\(mb(free)) free in \(stateDir.path); the store is \(mb(store)), a full snapshot needs about \(mb(need))"
        if free < need { return Finding(check: "disk", level: .failed, words: words + ": free some space, or a snapshot cannot install") }
        return Finding(check: "disk", level: free < 2 * need ? .warning : .ok, words: words)
    }

    // MARK: screen, font, voice

    /// The screen's programs, its service (under systemd) and a Chinese font.
    func screen() -> [Finding] {
        var findings: [Finding] = []
        let missing = probe.screenPrograms.filter { !FileManager.default.isExecutableFile(atPath: $0) }
        if !missing.isEmpty {
            findings.append(Finding(check: "screen", level: .failed, words: "\(missing.joined(separator: ", ")) not installed: the screen cannot start "
                                    + "(apt install cage chromium)"))
        } else if let r = probe.systemctl(["is-active", "benefit-kiosk-browser.service"]) {
            findings.append(r.status == 0 ? Finding(check: "screen", level: .ok, words: "the screen service is running")
                            : Finding(check: "screen", level: .failed, words: "the screen service is \(r.output.trimmingCharacters(in: .whitespacesAndNewlines)): "
                                      + "systemctl enable --now benefit-kiosk-browser"))
        } else {
            findings.append(Finding(check: "screen", level: .skipped, words: "cage and chromium are installed; systemd is not running here, so the screen service is not checked"))
        }
        switch probe.chineseFonts() {
        case nil: findings.append(Finding(check: "font", level: .failed, words: "fontconfig (fc-list) is missing: the screen's fonts cannot be checked"))
        case let fonts? where fonts.isEmpty:
            findings.append(Finding(check: "font", level: .failed, words: "no Chinese font: the screen would show boxes (apt install fonts-noto-cjk)"))
        case let fonts?:
            // The simplified-Chinese face where there is one (fc-list names each family once per style).
            let name = (fonts.first { $0.contains("CJK SC") } ?? fonts[0]).split(separator: ",").first.map(String.init) ?? fonts[0]
            findings.append(Finding(check: "font", level: .ok, words: "Chinese font: \(name)"))
        }
        return findings
    }

    /// Every voice prompt is there (and, with `play`, one is played on the screen's output).
    func voice(_ device: Device, play: Bool) -> [Finding] {
        guard device.config.screenSettings.voice else {
            return [Finding(check: "voice", level: .skipped, words: "voice prompts are off (provision --voice on)")]
        }
        let dir = stateDir.appendingPathComponent("voice")
        let missing = VoicePrompts.catalogue.keys.filter { !FileManager.default.fileExists(atPath: dir.appendingPathComponent("\($0).wav").path) }
        var findings = [missing.isEmpty
            ? Finding(check: "voice", level: .ok, words: "all \(VoicePrompts.catalogue.count) prompts in \(dir.path)")
            : Finding(check: "voice", level: .failed, words: "\(missing.count) of \(VoicePrompts.catalogue.count) prompts missing from \(dir.path) "
                      + "(e.g. \(missing.sorted()[0]).wav): kioskctl voice generate")]
        if play { findings.append(playPrompt(dir.appendingPathComponent("insert_card.wav"))) }
        return findings
    }

    /// Plays the 请刷卡 prompt on the screen's ALSA output (`KIOSK_ALSA_DEVICE`).
    func playPrompt(_ file: URL) -> Finding {
        let output = DoctorChecks.alsaDevice(envFile: probe.screenEnvFile)
        guard FileManager.default.isExecutableFile(atPath: probe.player) else {
            return Finding(check: "sound", level: .failed, words: "\(probe.player) is missing (apt install alsa-utils)")
        }
        guard let r = DoctorProbe.execute(probe.player, ["-q", "-D", output, file.path]), r.status == 0 else {
            return Finding(check: "sound", level: .failed, words: "\(file.lastPathComponent) could not be played on \(output): "
                           + "is the speaker connected? set KIOSK_ALSA_DEVICE in \(probe.screenEnvFile) (aplay -L lists the outputs)")
        }
        return Finding(check: "sound", level: .ok, words: "played 请刷卡 on \(output): if nobody heard it, check the speaker and the volume (alsamixer)")
    }

    /// `KIOSK_ALSA_DEVICE` from the screen's environment file, or `default`.
    static func alsaDevice(envFile: String) -> String {
        guard let text = try? String(contentsOfFile: envFile, encoding: .utf8) else { return "default" }
        for line in text.split(separator: "\n") where line.hasPrefix("KIOSK_ALSA_DEVICE=") {
            let value = line.dropFirst("KIOSK_ALSA_DEVICE=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\"' "))
            if !value.isEmpty { return value }
        }
        return "default"
    }
}

/// The hub did not answer within the doctor's time.
struct HubProbeTimeout: Error {}

/// The hub's answer to the health check: its status and `Date` header.
struct HubAnswer: Sendable {
    var status: UInt
    var date: String?
}

extension DoctorChecks {
    /// `GET url`, given up after `within`.
    static func ask(_ client: HTTPClient, url: String, within: Duration) async -> Result<HubAnswer, Error> {
        do {
            return .success(try await withThrowingTaskGroup(of: HubAnswer.self) { group in
                group.addTask {
                    let response = try await client.execute(HTTPClientRequest(url: url), timeout: .hours(1))
                    return HubAnswer(status: response.status.code, date: response.headers.first(name: "date"))
                }
                group.addTask { try await Task.sleep(for: within); throw HubProbeTimeout() }
                defer { group.cancelAll() }
                return try await group.next()!
            })
        } catch { return .failure(error) }
    }
}
