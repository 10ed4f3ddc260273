import ArgumentParser
import BenefitCard
import Crypto
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import Settlement

/// `--paper 58|80`: anything else is a usage error (exit 64), never another width.
extension DeviceConfig.PaperWidth: ExpressibleByArgument {}

struct Provision: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or update the device identity: Ed25519 key (0600), institution, profile, trusted keys, hub, printer.",
        discussion: "Re-provisioning keeps the key (unless --replace-key) and never resets the record sequence.")
    @OptionGroup var state: StateOptions
    @Option(help: "Device identifier, e.g. KSK-330782-0001.") var deviceId: String
    @Option(help: "Institution code, e.g. 330782-H01.") var institution: String
    @Option(help: "hospital or township.") var profile: String
    @Option(help: "Trusted card issuer key, KEY_ID=BASE64 (repeatable).") var issuerKey: [String] = []
    @Option(help: "Trusted snapshot authority key, KEY_ID=BASE64 (repeatable).") var authorityKey: [String] = []
    @Option(help: "The issuer's device-CA key, KEY_ID=BASE64 (repeatable): device certificates are checked against it.") var deviceCaKey: [String] = []
    @Option(help: "Install this device certificate (7F21, binary, hex or base64) once provisioned: the platform issues it for the public key printed here.") var deviceCert: String?
    @Option(help: "Settlement hub URL.") var hubUrl: String
    @Option(help: "The region whose snapshots to sync, e.g. 330782 (default: the installed snapshot's).") var region: String?
    @Option(help: "PEM file of the hub's CA: uploads then trust only it (default: the system's roots).") var hubCa: String?
    @Option(help: "Printer (required): device:/dev/usb/lp0, tcp:HOST:9100, file:/path (receipts kept as files: tests, training), or none (no printer: the screen then promises no slip).")
    var printer: String
    @Option(help: "The card reader to use, by its name in `kioskctl readers` (default: every reader).") var reader: String?
    @Option(help: "Receipt paper width in mm: 58 or 80 (default 58).") var paper: DeviceConfig.PaperWidth?
    @Option(help: "Import this device key (base64 32-byte Ed25519 seed) instead of making one: labs and tests.") var deviceKeySeed: String?
    @Flag(help: "Replace an existing device key.") var replaceKey = false
    @Option(help: "Screen: the counter people are sent to for help (the hospital cashier's window, the township hall's counter).") var helpDesk: String?
    @Option(help: "Screen and ticket: where a legal-aid applicant goes next.") var legalAidOffice: String?
    @Option(help: "Screen and ticket: when that office receives people.") var legalAidHours: String?
    @Option(help: "Screen: seconds a result stays while the card stays on the reader (5–600, default 30).") var resultSeconds: Int?
    @Option(help: "Seconds after filing in which a resident can withdraw a legal-aid application at the kiosk (0–300, default 60).") var cancelSeconds: Int?
    @Option(help: "Voice prompts: on or off (default on).") var voice: String?
    @Option(help: "Voice volume in percent (0–100, default 80).") var volume: Int?
    @Option(help: "Screen and slip: the institution's name as people know it (市第一人民医院), shown instead of its code.") var displayName: String?
    @Option(help: "Screen: the help counter's phone number (0–9, -, space, +; at most 20).") var helpPhone: String?

    func validate() throws {
        guard DeviceConfig.Profile(rawValue: profile) != nil else { throw ValidationError("--profile is hospital or township") }
        guard Identifiers.isDeviceID(deviceId) else {
            throw ValidationError("--device-id is 1–20 characters of A–Z 0–9 - (it is written to cards and must fit the receipt's QR)")
        }
        for k in issuerKey + authorityKey + deviceCaKey where TrustOptions.parsePair(k) == nil { throw ValidationError("'\(k)' is not KEY_ID=BASE64") }
        do { _ = try HubURL.check(hubUrl) } catch { throw ValidationError("--hub-url: \(error)") }
        do { try DeviceConfig.checkPrinter(printer) } catch { throw ValidationError("--printer: \(error), or none") }
        if let reader, reader.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--reader is a reader's name (kioskctl readers lists them)") }
        if let s = deviceKeySeed, Data(base64Encoded: s)?.count != 32 { throw ValidationError("--device-key-seed is not base64 of 32 bytes") }
        if let region, !Identifiers.isSyncName(region) { throw ValidationError("--region is 1–64 of A–Z a–z 0–9 . _ -") }
        if let resultSeconds, !(5...600).contains(resultSeconds) { throw ValidationError("--result-seconds is 5…600") }
        if let volume, !(0...100).contains(volume) { throw ValidationError("--volume is 0…100") }
        if let cancelSeconds, !(0...300).contains(cancelSeconds) { throw ValidationError("--cancel-seconds is 0…300") }
        if let voice, !["on", "off"].contains(voice) { throw ValidationError("--voice is on or off") }
        if let helpPhone, helpPhone.isEmpty || helpPhone.utf8.count > 20 || !helpPhone.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == 0x2D || $0 == 0x20 || $0 == 0x2B }) {
            throw ValidationError("--help-phone is 1–20 characters of 0–9, -, + and spaces")
        }
        for (name, text) in [("--help-desk", helpDesk), ("--legal-aid-office", legalAidOffice), ("--legal-aid-hours", legalAidHours),
                             ("--display-name", displayName)] {
            if let text, text.isEmpty || text.count > 40 { throw ValidationError("\(name) is 1–40 characters (it is printed on a 58 mm ticket)") }
        }
    }

    /// The region to sync: `--region`, else the one provisioned before, else the installed
    /// snapshot's (nil, as kioskd then reads it). With none of them a fresh kiosk would never
    /// sync, so `--region` is then a usage error (64) naming the option.
    func syncRegion() throws -> String? {
        if let region { return region }
        let previous = try? Device(stateDir: state.url)
        if let old = previous?.config.region { return old }
        if (try? previous?.store.installedSnapshot()) != nil { return nil }
        throw ValidationError("--region is required: no snapshot is installed here, so the kiosk would not know which "
                              + "region's snapshots to sync (the district's code, e.g. --region 330782)")
    }

    var screen: ScreenSettings? {
        guard helpDesk != nil || legalAidOffice != nil || legalAidHours != nil || resultSeconds != nil || cancelSeconds != nil || voice != nil
              || volume != nil || displayName != nil || helpPhone != nil else { return nil }
        var s = ScreenSettings()
        if let helpDesk { s.helpDesk = helpDesk }
        if let legalAidOffice { s.legalAidOffice = legalAidOffice }
        if let legalAidHours { s.legalAidHours = legalAidHours }
        if let resultSeconds { s.resultSeconds = resultSeconds }
        if let cancelSeconds { s.cancelSeconds = cancelSeconds }
        if let voice { s.voice = voice == "on" }
        if let volume { s.volume = volume }
        s.displayName = displayName
        s.helpPhone = helpPhone
        return s
    }

    func run() throws {
        var hubCAPEM: String?
        if let hubCa {
            do {
                let pem = try String(contentsOfFile: hubCa, encoding: .utf8)
                _ = try Uploader.hubCertificates(pem: pem)
                hubCAPEM = pem
            } catch { try fail(CommandFailure(message: "--hub-ca \(hubCa): \(error)", status: .usage)) }
        }
        func pairs(_ list: [String]) -> [String: String] {
            Dictionary(list.map { k -> (String, String) in let i = k.firstIndex(of: "=")!; return (String(k[..<i]), String(k[k.index(after: i)...])) }) { $1 }
        }
        var config = DeviceConfig(deviceID: deviceId, institution: institution, profile: DeviceConfig.Profile(rawValue: profile)!,
                                  issuerKeys: pairs(issuerKey), authorityKeys: pairs(authorityKey), deviceCAKeys: pairs(deviceCaKey), hubURL: hubUrl, hubCAPEM: hubCAPEM, printer: printer,
                                  provisionedAt: Timestamp.string(Date()), region: try syncRegion())
        config.screen = screen
        config.reader = reader
        config.paper = paper
        do {
            let device = try Device.provision(stateDir: state.url, config: config, seed: deviceKeySeed.flatMap { Data(base64Encoded: $0) }, replaceKey: replaceKey)
            print("provisioned \(device.config.deviceID) (\(device.config.profile.rawValue), \(device.config.institution)) in \(state.url.path)")
            print("device public key: \(device.publicKeyBase64)")
            print("record sequence: \(try device.store.lastSequence(deviceID: deviceId)) records so far")
            if let deviceCert {
                let clock = (try? KioskClock.fromEnvironment()) ?? .system
                let cert = try device.installCertificate(try CertificateFile.read(deviceCert), now: clock.now())
                print("device certificate installed: \(cert.caKeyID), valid \(cert.validFrom) to \(cert.validThrough)")
            } else if device.certificate == nil {
                // What the platform needs to certify this device (the key never leaves it).
                print("certificate request (give this line to the platform; install its answer with kioskctl certificate install FILE):")
                print(CertificateRequest(device: device).line)
            }
        } catch let e as DeviceError { try fail(CommandFailure(message: e.description, status: .usage)) }
    }
}

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Entitlement snapshots.", subcommands: [Install.self, Status.self, Sync.self])

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify and install a snapshot (full or delta), whole or not at all.")
        @OptionGroup var state: StateOptions
        @Argument(help: "The snapshot file (JSON Lines).") var file: String

        func run() throws {
            let kiosk: Kiosk
            do { kiosk = try state.kiosk() } catch let f as CommandFailure { try fail(f) }
            let device = kiosk.device
            do {
                // kioskd may be running and taking a patient's bill: it gets the store between
                // every two ranges of the copy (KioskStore.installSnapshot).
                let r = try device.store.installSnapshot(at: URL(fileURLWithPath: file), trustedAuthorities: device.trustedAuthorities,
                                                         now: kiosk.clock.now(), pauseBetweenRanges: .milliseconds(105))
                print("installed \(r.header.snapshotID) (\(r.header.kind), region \(r.header.region), \(r.records) records, \(r.ignoredRecords) of unknown types ignored), expires \(r.header.expiresAt)")
            } catch let refusal as SnapshotRefusal {
                try? device.store.recordAlert(device: device.context, code: "snapshot_refused", cardNumber: nil, detail: refusal.description, now: kiosk.clock.now())
                try fail(CommandFailure(message: refusal.description, status: .refused))
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The installed snapshot.")
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let kiosk: Kiosk
            do { kiosk = try state.kiosk() } catch let f as CommandFailure { try fail(f) }
            guard let s = try kiosk.device.store.installedSnapshot() else {
                if json { printJSON(["installed": false]) } else { print("no snapshot installed (snapshot_missing)") }
                throw ExitCode(ExitStatus.notReady.rawValue)
            }
            let expired = (Timestamp.date(s.header.expiresAt) ?? .distantPast) <= kiosk.clock.now()
            if json {
                printJSON(["installed": true, "snapshot_id": s.header.snapshotID, "kind": s.header.kind, "region": s.header.region,
                           "issued_at": s.header.issuedAt, "expires_at": s.header.expiresAt, "settled_through": s.header.settledThrough,
                           "installed_at": s.installedAt, "records": s.records, "ignored_records": s.ignored, "expired": expired])
            } else {
                print("snapshot \(s.header.snapshotID) (\(s.header.kind)), region \(s.header.region)")
                print("  issued \(s.header.issuedAt), expires \(s.header.expiresAt)\(expired ? "  EXPIRED: no new subsidies (snapshot_expired)" : "")")
                print("  settled through \(s.header.settledThrough); installed \(s.installedAt); \(s.records) records")
            }
        }
    }
}

struct Ledger: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Deductions (pending, committed, voided), newest first.")
    @OptionGroup var state: StateOptions
    @Option var limit = 50
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let device: Device
        do { device = try state.device() } catch let f as CommandFailure { try fail(f) }
        let rows = try device.store.deductions(limit: limit)
        if json {
            printJSON(["deductions": rows.map { d -> [String: Any] in
                ["id": d.id, "state": d.state.rawValue, "card_number": Masking.cardNumber(d.cardNumber), "period": d.period,
                 "bill_reference": d.billReference, "bill_fen": d.billFen, "subsidy_fen": d.allocations.reduce(0) { $0 + $1.subsidyFen },
                 "card_sequence": Int(d.cardSequence), "created_at": d.createdAt, "resolution": d.resolution ?? ""]
            }])
            return
        }
        if rows.isEmpty { print("no deductions"); return }
        for d in rows {
            let subsidy = d.allocations.reduce(0) { $0 + $1.subsidyFen }
            print("\(d.id)\t\(d.state.rawValue)\t\(Masking.cardNumber(d.cardNumber))\tbill \(d.billReference) \(yuan(d.billFen))\tsubsidy \(yuan(subsidy))\tseq \(d.cardSequence)\t\(d.createdAt)\t\(d.resolution ?? "")")
        }
    }
}

struct Queue: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Settlement records: queued for upload, accepted, rejected.")
    @OptionGroup var state: StateOptions
    @Option(help: "Only queued, accepted or rejected.") var status: String?
    @Flag(help: "Print every record's JSON body.") var json = false

    func validate() throws {
        if let status, RecordStatus(rawValue: status) == nil { throw ValidationError("--status is queued, accepted or rejected") }
    }

    func run() throws {
        let device: Device
        do { device = try state.device() } catch let f as CommandFailure { try fail(f) }
        let rows = try device.store.records(status: status.flatMap(RecordStatus.init(rawValue:)), limit: 100_000)
        if json {
            printJSON(["records": rows.map { r -> [String: Any] in
                // The body as stored, byte for byte (an unreadable one is shown, not hidden).
                let body = (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) ?? r.body
                var o: [String: Any] = ["record": body, "status": r.status.rawValue]
                if let x = r.receivedAt { o["received_at"] = x }
                if let x = r.rejectReason { o["reject_reason"] = x }
                return o
            }])
            return
        }
        let counts = Dictionary(grouping: rows, by: \.status).mapValues(\.count)
        print("queued \(counts[.queued] ?? 0), accepted \(counts[.accepted] ?? 0), rejected \(counts[.rejected] ?? 0); last seq \(try device.store.lastSequence(deviceID: device.config.deviceID))")
        for r in rows {
            print("\(r.recordID)\t\(r.kind.rawValue)\t\(r.status.rawValue)\t\(r.createdAt)" + (r.amountFen != 0 ? "\t\(yuan(r.amountFen))" : "") + (r.rejectReason.map { "\trejected: \($0)" } ?? ""))
        }
    }
}

struct Reverse: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reverse a mistaken subsidy (a subsidy_reversal record; the card's record is not lowered).")
    @OptionGroup var state: StateOptions
    @Argument(help: "The record_id of the medical_subsidy to reverse.") var recordId: String
    @Option(help: "Why.") var reason: String
    @Option(help: "Who (operator id).") var `operator`: String

    func validate() throws {
        guard !reason.isEmpty, !`operator`.isEmpty else { throw ValidationError("--reason and --operator must not be empty") }
    }

    func run() throws {
        do {
            let kiosk = try state.kiosk()
            let r = try kiosk.device.store.reverse(recordID: recordId, reason: reason, operator: `operator`, device: kiosk.device.context, now: kiosk.clock.now())
            print("reversed \(recordId): record \(r.recordID), \(yuan(-r.amountFen)) yuan")
            // Receipt spec: a reversal prints its receipt (冲正凭条) too.
            for t in ReceiptDesk(device: kiosk.device).issue(records: [r], holderName: "", matterName: nil, now: kiosk.clock.now()) {
                print("  receipt: \(t.text)")
            }
        } catch let f as CommandFailure { try fail(f)
        } catch let e as LedgerError { try fail(CommandFailure(message: e.description, status: .refused))
        } catch let e as StoreError { try fail(CommandFailure(message: e.description, status: .storage)) }
    }
}
