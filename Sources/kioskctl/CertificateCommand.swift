import KioskProtocol
import ArgumentParser
import BenefitCard
import Foundation
import KioskCore
import KioskStore

/// What the platform needs to certify a device: its id, institution and public key, one
/// JSON line. The private key stays on the device.
struct CertificateRequest {
    let device: Device
    var line: String {
        let o: [String: Any] = ["type": "certificate_request", "device_id": device.config.deviceID,
                                "institution": device.config.institution, "public_key": device.publicKeyBase64]
        let data = try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}

/// A certificate file (binary, hex or base64: `DeviceCertificate.fileBytes`).
enum CertificateFile {
    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DeviceError.badCertificate("cannot read \(path)") }
        return DeviceCertificate.fileBytes(data)
    }
}

struct Certificate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The device certificate (card spec §5.2): only a certified device may write a card.",
        subcommands: [Request.self, Install.self, Show.self, Renew.self])

    struct Request: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print what the platform needs to certify this device (one JSON line).")
        @OptionGroup var state: StateOptions
        func run() throws {
            let device: Device
            do { device = try state.device() } catch let f as CommandFailure { try fail(f) }
            print(CertificateRequest(device: device).line)
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check and install a device certificate: the CA keys from provisioning, this device's key and id, at most 90 days, not run out.")
        @OptionGroup var state: StateOptions
        @Argument(help: "The certificate (7F21) as binary, hex or base64.") var file: String
        func run() throws {
            do {
                let kiosk = try state.kiosk()
                let cert = try kiosk.device.installCertificate(try CertificateFile.read(file), now: kiosk.clock.now())
                print("device certificate installed for \(cert.deviceID): CA \(cert.caKeyID), valid \(cert.validFrom) to \(cert.validThrough)")
            } catch let f as CommandFailure { try fail(f)
            } catch let e as DeviceError { try fail(CommandFailure(message: e.description, status: .refused)) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The installed certificate and how long it has left.")
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            let kiosk: Kiosk
            do { kiosk = try state.kiosk() } catch let f as CommandFailure { try fail(f) }
            let now = kiosk.clock.now()
            guard let cert = kiosk.device.certificate else {
                if json { printJSON(["installed": false]) } else { print("no device certificate installed: no subsidies (device_retired)") }
                throw ExitCode(ExitStatus.notReady.rawValue)
            }
            let warning = kiosk.certificateWarning(now: now)
            if json {
                var o: [String: Any] = ["installed": true, "device_id": cert.deviceID, "ca_key_id": cert.caKeyID,
                                        "valid_from": "\(cert.validFrom)", "valid_through": "\(cert.validThrough)",
                                        "valid_now": cert.isValid(at: now)]
                if let warning { o["warning"] = warning }
                printJSON(o)
            } else {
                print("device certificate for \(cert.deviceID): CA \(cert.caKeyID), valid \(cert.validFrom) to \(cert.validThrough)\(cert.isValid(at: now) ? "" : "  NOT VALID NOW")")
                if let warning { print("  warning: \(warning)") }
            }
        }
    }
}

struct Clock: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Clock integrity (sync spec §6): the floor the device clock must not read before.",
        subcommands: [Show.self, Reset.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The clock, the floor, and whether the clock is suspect.")
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            let kiosk: Kiosk
            do { kiosk = try state.kiosk() } catch let f as CommandFailure { try fail(f) }
            let now = kiosk.clock.now()
            let floor = try kiosk.device.store.clockFloor()
            let suspicion = floor.suspicion(at: now)
            if json {
                var o: [String: Any] = ["now": Timestamp.string(now), "suspect": suspicion != nil]
                if let f = floor.floor { o["floor"] = Timestamp.string(f) }
                if let r = floor.resetAt { o["reset_at"] = r; o["reset_by"] = floor.resetBy ?? ""; o["reset_reason"] = floor.resetReason ?? "" }
                if let suspicion { o["detail"] = suspicion }
                printJSON(o)
            } else {
                print("clock \(Timestamp.string(now)), floor \(floor.floor.map(Timestamp.string) ?? "none yet")")
                if let suspicion { print("  SUSPECT (clock_suspect): \(suspicion); set the clock right, then kioskctl clock reset") }
                if let r = floor.resetAt { print("  last reset \(r) by \(floor.resetBy ?? ""): \(floor.resetReason ?? "")") }
            }
            if suspicion != nil { throw ExitCode(ExitStatus.notReady.rawValue) }
        }
    }

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "After setting the clock right: the floor restarts from the clock's reading now (an alert record says who and why).")
        @OptionGroup var state: StateOptions
        @Option(help: "Who (operator id).") var `operator`: String
        @Option(help: "Why.") var reason: String
        func validate() throws {
            guard !`operator`.trimmingCharacters(in: .whitespaces).isEmpty, !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ValidationError("--operator and --reason must not be empty")
            }
        }
        func run() throws {
            do {
                let kiosk = try state.kiosk()
                let r = try kiosk.device.store.resetClockFloor(now: kiosk.clock.now(), operator: `operator`, reason: reason, device: kiosk.device.context)
                print("clock floor reset to \(Timestamp.string(kiosk.clock.now())) (alert \(r.recordID))")
            } catch let f as CommandFailure { try fail(f)
            } catch let e as StoreError { try fail(CommandFailure(message: e.description, status: .storage)) }
        }
    }
}

struct BillAPIToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bill-api-token",
        abstract: "Print the bill API token the hospital system sends as Authorization: Bearer TOKEN (made at provisioning, 0600).")
    @OptionGroup var state: StateOptions
    @Flag(help: "Make one if there is none.") var create = false
    func run() throws {
        let device: Device
        do { device = try state.device() } catch let f as CommandFailure { try fail(f) }
        if let t = device.billAPIToken { print(t); return }
        guard create else { try fail(CommandFailure(message: "no bill API token; kioskctl bill-api-token --create makes one", status: .notReady)) }
        print(try device.ensureBillAPIToken())
    }
}

/// Issue 20 item 6: the screen's one-time URL, which the browser unit opens. kioskd keeps it
/// in the state folder (0640, group kiosk-screen), valid 5 minutes and renewed after each use.
struct ScreenURL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "screen-url",
        abstract: "Print the one-time URL that opens the kiosk screen with its session (run as root or the kiosk user).")
    @OptionGroup var state: StateOptions
    @Option(help: "The file kioskd keeps it in (default: /run/benefit-kiosk/screen-url when it exists, else STATE/screen-url).")
    var file: String?
    func run() throws {
        let run = URL(fileURLWithPath: "/run/benefit-kiosk/screen-url")
        let url = file.map { URL(fileURLWithPath: $0) }
            ?? (FileManager.default.fileExists(atPath: run.path) && state.stateDir == nil ? run : state.url.appendingPathComponent("screen-url"))
        guard let text = try? String(contentsOf: url, encoding: .utf8), text.hasPrefix("http://127.0.0.1:") else {
            try fail(CommandFailure(message: "no screen URL in \(url.path): is kioskd running? (run this as root, the kiosk user or the screen's)", status: .notReady))
        }
        print(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
