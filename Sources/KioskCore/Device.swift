import BenefitCard
import Crypto
import KioskProtocol
import Foundation
import Synchronization
import KioskStore
import Receipts

/// What provisioning records (`STATE_DIR/device.json`); the key is beside it in `device.key` (0600).
public struct DeviceConfig: Codable, Sendable, Equatable {
    /// A hospital kiosk (bills subsidised, with the bill API) or a township terminal
    /// (allowance checks and legal-aid applications).
    public enum Profile: String, Codable, Sendable { case hospital, township }
    /// The device's id: 1–20 characters of A–Z 0–9 - (receipt spec §1).
    public var deviceID: String
    /// The institution the device serves (its code), written into subsidy records.
    public var institution: String
    /// Which kind of kiosk this is.
    public var profile: Profile
    /// Trusted card issuer public keys (base64) by key identifier.
    public var issuerKeys: [String: String]
    /// Trusted snapshot authority public keys (base64) by key identifier.
    public var authorityKeys: [String: String]
    /// The issuer's device-CA public keys (base64) by key identifier: a device certificate
    /// (card spec §5.2) is installed only when one of them signed it.
    public var deviceCAKeys: [String: String]
    /// The settlement hub's base URL: `https`, or `http` on loopback only (upload spec §2).
    public var hubURL: String
    /// The hub's CA certificates (PEM) from provisioning (upload spec §2: "the hub URL and its
    /// CA come from provisioning"). When set, the uploader trusts these and nothing else;
    /// nil: the system's roots.
    public var hubCAPEM: String?
    /// `file:/path`, `tcp:host:9100`, `device:/dev/usb/lp0`, or `none` (a kiosk without a
    /// printer: no screen then promises a slip). Checked by `validate()`.
    public var printer: String
    /// The PC/SC reader the kiosk uses (its name as `kioskctl readers` prints it); nil: every
    /// reader (virtual ones only with `--virtual-readers`).
    public var reader: String?
    /// The receipt paper's width; nil: 58 mm. A value other than 58 or 80 is refused when
    /// `device.json` is read, never taken as another width.
    public var paper: PaperWidth?
    /// When the device was last provisioned, RFC 3339 UTC.
    public var provisionedAt: String
    /// The region whose snapshots this kiosk syncs (sync spec §2); nil: the installed snapshot's.
    public var region: String?
    /// What the screen tells people and how (issue 10); absent: the defaults.
    public var screen: ScreenSettings?

    /// The screen settings in force (the configured ones, or the defaults).
    public var screenSettings: ScreenSettings { screen ?? ScreenSettings() }

    /// A receipt printer's paper width in millimetres: 58 or 80, nothing else.
    public enum PaperWidth: Int, Codable, Sendable, CaseIterable {
        /// 58 mm rolls (32 characters a line).
        case mm58 = 58
        /// 80 mm rolls (48 characters a line).
        case mm80 = 80

        /// The receipt renderer's paper of this width.
        public var paper: Paper { self == .mm80 ? .mm80 : .mm58 }
    }

    /// The printer spec that means "this kiosk has no printer".
    public static let noPrinter = "none"

    /// Whether this kiosk prints slips (its printer is not `none`): the screen promises a
    /// slip only then.
    public var printsSlips: Bool { printer != Self.noPrinter }

    /// Checks a printer spec: `none`, or one `Printer.parse` takes.
    /// - Throws: `PrinterSpecError`.
    public static func checkPrinter(_ spec: String) throws {
        if spec != noPrinter { _ = try Printer.parse(spec: spec) }
    }

    /// The paper width in force (58 mm unless configured).
    public var paperWidth: PaperWidth { paper ?? .mm58 }

    /// Checks what `Codable` cannot: the printer spec parses (or is `none`) and the reader's
    /// name is not empty.
    /// - Throws: `DeviceError.badConfig`, naming the field.
    public func validate() throws {
        do { try Self.checkPrinter(printer) } catch { throw DeviceError.badConfig("printer: \(error)") }
        if let reader, reader.trimmingCharacters(in: .whitespaces).isEmpty { throw DeviceError.badConfig("reader: an empty name") }
    }

    enum CodingKeys: String, CodingKey {
        case deviceID = "device_id", institution, profile, issuerKeys = "issuer_keys", authorityKeys = "authority_keys"
        case deviceCAKeys = "device_ca_keys"
        case hubURL = "hub_url", hubCAPEM = "hub_ca_pem", printer, reader, paper, provisionedAt = "provisioned_at", region, screen
    }

    /// A configuration as given (`kioskctl provision` makes it).
    public init(deviceID: String, institution: String, profile: Profile, issuerKeys: [String: String], authorityKeys: [String: String],
                deviceCAKeys: [String: String] = [:], hubURL: String, hubCAPEM: String? = nil, printer: String, provisionedAt: String,
                region: String? = nil) {
        self.region = region
        self.deviceID = deviceID; self.institution = institution; self.profile = profile; self.issuerKeys = issuerKeys
        self.authorityKeys = authorityKeys; self.deviceCAKeys = deviceCAKeys; self.hubURL = hubURL; self.hubCAPEM = hubCAPEM; self.printer = printer; self.provisionedAt = provisionedAt
    }
}

/// What the patient's and the resident's screen says beyond the decision (issue 10): where
/// to go for help, where and when a legal-aid applicant goes next, how long a result stays,
/// and the voice.
public struct ScreenSettings: Codable, Sendable, Equatable {
    /// The counter people are sent to: the hospital cashier's window, the township hall's counter.
    public var helpDesk: String = "人工服务窗口"
    /// Where a legal-aid applicant goes next (printed on the ticket, shown on the screen).
    public var legalAidOffice: String = "县法律援助中心"
    /// When that office receives people.
    public var legalAidHours: String = "工作日 8:30–12:00, 14:00–17:30"
    /// Seconds a result stays on the screen while the card stays on the reader (privacy in a queue).
    public var resultSeconds: Int = 30
    /// Seconds after filing in which a resident can withdraw a legal-aid application at the kiosk.
    public var cancelSeconds: Int = 60
    /// Voice prompts on or off, and their volume in percent.
    public var voice: Bool = true
    /// The voice prompts' volume in percent, 0–100.
    public var volume: Int = 80
    /// The institution's name as people know it (市第一人民医院), shown on the screen and the
    /// slip instead of its code; nil: none shown.
    public var displayName: String?
    /// The help counter's phone number, shown beside `helpDesk`.
    public var helpPhone: String?

    /// The defaults.
    public init() {}

    enum CodingKeys: String, CodingKey {
        case helpDesk = "help_desk", legalAidOffice = "legal_aid_office", legalAidHours = "legal_aid_hours"
        case resultSeconds = "result_seconds", cancelSeconds = "cancel_seconds", voice, volume
        case displayName = "display_name", helpPhone = "help_phone"
    }

    /// Reads `screen` from `device.json`, a missing key taking its default.
    /// - Throws: `DecodingError` when `result_seconds` is outside 5…600, `cancel_seconds`
    /// outside 0…300 or `volume` outside 0…100.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ScreenSettings()
        helpDesk = try c.decodeIfPresent(String.self, forKey: .helpDesk) ?? d.helpDesk
        legalAidOffice = try c.decodeIfPresent(String.self, forKey: .legalAidOffice) ?? d.legalAidOffice
        legalAidHours = try c.decodeIfPresent(String.self, forKey: .legalAidHours) ?? d.legalAidHours
        resultSeconds = try c.decodeIfPresent(Int.self, forKey: .resultSeconds) ?? d.resultSeconds
        cancelSeconds = try c.decodeIfPresent(Int.self, forKey: .cancelSeconds) ?? d.cancelSeconds
        voice = try c.decodeIfPresent(Bool.self, forKey: .voice) ?? d.voice
        volume = try c.decodeIfPresent(Int.self, forKey: .volume) ?? d.volume
        displayName = try c.decodeIfPresent(String.self, forKey: .displayName)
        helpPhone = try c.decodeIfPresent(String.self, forKey: .helpPhone)
        guard (5...600).contains(resultSeconds) else {
            throw DecodingError.dataCorruptedError(forKey: .resultSeconds, in: c, debugDescription: "result_seconds must be 5…600")
        }
        guard (0...300).contains(cancelSeconds) else {
            throw DecodingError.dataCorruptedError(forKey: .cancelSeconds, in: c, debugDescription: "cancel_seconds must be 0…300")
        }
        guard (0...100).contains(volume) else {
            throw DecodingError.dataCorruptedError(forKey: .volume, in: c, debugDescription: "volume must be 0…100")
        }
    }
}

/// Why a device could not be provisioned, opened or given a certificate.
public enum DeviceError: Error, Equatable, CustomStringConvertible {
    /// No `device.json` in the state folder (named).
    case notProvisioned(String)
    /// The device key (or the seed given) is unreadable.
    case badKey(String)
    /// `device.json` cannot be read or written, or holds a bad key.
    case badConfig(String)
    /// Another device key is already provisioned here (`--replace-key` replaces it).
    case keyMismatch
    /// The state folder belongs to another device id.
    case deviceIDChange(from: String, to: String)
    /// Not a device id the receipt's QR can carry.
    case badDeviceID(String)
    /// A device certificate refused, with why.
    case badCertificate(String)
    /// The device is provisioned but its store is not there (named): a new one would restart
    /// the record sequence, so none is made.
    case storeMissing(String)
    /// The failure in one line, with what to do where there is something.
    public var description: String {
        switch self {
        case .notProvisioned(let dir): return "the device is not provisioned (no device.json in \(dir)); run kioskctl provision"
        case .badKey(let why): return "device key: \(why)"
        case .badConfig(let why): return "device.json: \(why)"
        case .keyMismatch: return "a different device key is already provisioned here; pass --replace-key to replace it"
        case .deviceIDChange(let a, let b): return "this state folder belongs to device \(a), not \(b); its records and sequence stay with it"
        case .badDeviceID(let id): return "device id \"\(id)\" is not 1–20 characters of A–Z 0–9 - (receipt spec §1: the receipt's QR must fit)"
        case .badCertificate(let why): return "device certificate refused: \(why)"
        case .storeMissing(let path):
            return "the store \(path) is missing: restore it from the backup (docs/operations.md, Backup); a new store would restart "
                + "the record sequence and the hub would refuse every record, so none is made"
        }
    }
}

/// A provisioned device: its configuration, its signing key and its store (checked
/// `Sendable`: every stored property is a `let` of a `Sendable` type).
public final class Device: Sendable {
    /// The state folder (`STATE_DIR`): `device.json`, `device.key`, `kiosk.sqlite`, `device.cert`.
    public let stateDir: URL
    /// What provisioning recorded.
    public let config: DeviceConfig
    /// The device key (Ed25519): it signs EF.USAGE records, receipts, upload batches and sync requests.
    public let signingKey: Curve25519.Signing.PrivateKey
    /// The device's store (`kiosk.sqlite`).
    public let store: KioskStore
    /// The device certificate (card spec §5.2), installed by the technician or renewed through
    /// the hub; nil before. A renewal takes effect at once.
    public var certificate: DeviceCertificate? { currentCertificate.withLock { $0 } }
    private let currentCertificate: Mutex<DeviceCertificate?>

    /// Who this device is, as the ledger needs it.
    public var context: DeviceContext { DeviceContext(deviceID: config.deviceID, institution: config.institution) }
    /// The device's public key, base64 of its 32 bytes.
    public var publicKeyBase64: String { signingKey.publicKey.rawRepresentation.base64EncodedString() }

    static func paths(_ dir: URL) -> (config: URL, key: URL, db: URL, certificate: URL) {
        (dir.appendingPathComponent("device.json"), dir.appendingPathComponent("device.key"), dir.appendingPathComponent("kiosk.sqlite"),
         dir.appendingPathComponent("device.cert"))
    }

    /// Opens a provisioned device: its configuration, key, certificate (if any) and store.
    /// A provisioned device whose store is missing is refused (`storeMissing`), never given a
    /// new one: its record sequence must never restart (issue 23 item 5).
    /// - Throws: `DeviceError` (not provisioned, a bad key, id or certificate, no store) or `StoreError`.
    public init(stateDir: URL) throws {
        let p = Device.paths(stateDir)
        guard let data = FileManager.default.contents(atPath: p.config.path) else { throw DeviceError.notProvisioned(stateDir.path) }
        do { config = try JSONDecoder().decode(DeviceConfig.self, from: data) } catch { throw DeviceError.badConfig("\(error)") }
        try config.validate()
        signingKey = try Device.readKey(p.key)
        guard Identifiers.isDeviceID(config.deviceID) else { throw DeviceError.badDeviceID(config.deviceID) }
        if let bytes = FileManager.default.contents(atPath: p.certificate.path) {
            // Installed only after every check; read again, it must still be this device's.
            let cert: DeviceCertificate
            do { cert = try DeviceCertificate(bytes: [UInt8](bytes)) } catch { throw DeviceError.badCertificate("\(p.certificate.path): \(error)") }
            guard cert.deviceID == config.deviceID, cert.devicePublicKey == [UInt8](signingKey.publicKey.rawRepresentation) else {
                throw DeviceError.badCertificate("\(p.certificate.path) is not this device's (id or key differs)")
            }
            currentCertificate = Mutex(cert)
        } else {
            currentCertificate = Mutex(nil)
        }
        self.stateDir = stateDir
        guard FileManager.default.fileExists(atPath: p.db.path) else { throw DeviceError.storeMissing(p.db.path) }
        store = try KioskStore(path: p.db.path)
    }

    static func readKey(_ url: URL) throws -> Curve25519.Signing.PrivateKey {
        guard let text = FileManager.default.contents(atPath: url.path).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw DeviceError.badKey("cannot read \(url.path)")
        }
        guard let seed = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), seed.count == 32,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else { throw DeviceError.badKey("\(url.path) is not a base64 32-byte seed") }
        return key
    }

    /// Provisions (or re-provisions) the device in `stateDir`. The key is made once (0600)
    /// and kept on re-provisioning unless `replaceKey`; the store, with its record sequence,
    /// is never reset. A state folder keeps its device identifier.
    public static func provision(stateDir: URL, config: DeviceConfig, seed: Data?, replaceKey: Bool) throws -> Device {
        guard Identifiers.isDeviceID(config.deviceID) else { throw DeviceError.badDeviceID(config.deviceID) }
        try config.validate()
        let fm = FileManager.default
        try fm.createDirectory(at: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let p = paths(stateDir)
        if let old = fm.contents(atPath: p.config.path), let existing = try? JSONDecoder().decode(DeviceConfig.self, from: old),
           existing.deviceID != config.deviceID {
            throw DeviceError.deviceIDChange(from: existing.deviceID, to: config.deviceID)
        }
        let existingKey = fm.fileExists(atPath: p.key.path) ? try readKey(p.key) : nil
        var key: Curve25519.Signing.PrivateKey
        if let seed {
            guard seed.count == 32, let k = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else { throw DeviceError.badKey("the seed is not 32 bytes") }
            key = k
        } else {
            key = existingKey ?? Curve25519.Signing.PrivateKey()
        }
        if let existingKey, existingKey.rawRepresentation != key.rawRepresentation, !replaceKey { throw DeviceError.keyMismatch }
        if existingKey?.rawRepresentation != key.rawRepresentation {
            try atomicWrite(Data((key.rawRepresentation.base64EncodedString() + "\n").utf8), to: p.key, mode: 0o600)
        }
        for (id, k) in config.issuerKeys.merging(config.authorityKeys, uniquingKeysWith: { a, _ in a }).merging(config.deviceCAKeys, uniquingKeysWith: { a, _ in a }) {
            guard let d = Data(base64Encoded: k), (try? Curve25519.Signing.PublicKey(rawRepresentation: d)) != nil else {
                throw DeviceError.badConfig("key \(id) is not a base64 Ed25519 public key")
            }
        }
        // The store is made once, at the first provisioning, before device.json says the device
        // exists; a re-provisioned device whose store is gone is refused (`storeMissing`).
        if !fm.fileExists(atPath: p.config.path) && !fm.fileExists(atPath: p.db.path) {
            do { _ = try KioskStore(path: p.db.path) } catch { throw StoreError(error) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try atomicWrite(try encoder.encode(config), to: p.config, mode: 0o644)
        let device = try Device(stateDir: stateDir)
        if config.profile == .hospital { try device.ensureBillAPIToken() }
        return device
    }

    /// Write to a temporary file, fsync, rename: the old or the new file, never half.
    static func atomicWrite(_ data: Data, to url: URL, mode: mode_t) throws {
        let tmp = url.appendingPathExtension("tmp")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw DeviceError.badConfig("cannot write \(tmp.path): \(String(cString: strerror(errno)))") }
        let ok = data.withUnsafeBytes { write(fd, $0.baseAddress, data.count) == data.count }
        fchmod(fd, mode)
        let synced = fsync(fd) == 0
        close(fd)
        guard ok, synced, rename(tmp.path, url.path) == 0 else {
            unlink(tmp.path)
            throw DeviceError.badConfig("cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
    }

    /// The bill API's token (`STATE_DIR/bill-api.token`, 0600): the hospital system sends it
    /// as `Authorization: Bearer TOKEN`. Made at provisioning, kept on re-provisioning.
    public var billAPIToken: String? {
        FileManager.default.contents(atPath: stateDir.appendingPathComponent("bill-api.token").path)
            .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
            .flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Makes the bill API token when there is none (64 hex digits from the system's random
    /// source, 0600); returns it.
    @discardableResult
    public func ensureBillAPIToken() throws -> String {
        if let t = billAPIToken { return t }
        var g = SystemRandomNumberGenerator()
        let token = Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) })
        try Device.atomicWrite(Data((token + "\n").utf8), to: stateDir.appendingPathComponent("bill-api.token"), mode: 0o600)
        return token
    }

    /// The most a device certificate may span, "valid from" and "valid through" both counted
    /// (sync spec §5).
    public static let maximumCertificateDays = 90

    /// Checks a certificate for this device (card spec §5.2, sync spec §5): it parses, one of
    /// the device-CA keys from provisioning signed it, it names this device and this device's
    /// key, it spans at most 90 days, and it has not run out at `now`. Then it is stored
    /// (0644, atomically) and used from then on. Returns the certificate.
    @discardableResult
    public func installCertificate(_ bytes: [UInt8], now: Date) throws -> DeviceCertificate {
        let cert = try checkCertificate(bytes, now: now)
        try Device.atomicWrite(Data(cert.encoded), to: Device.paths(stateDir).certificate, mode: 0o644)
        currentCertificate.withLock { $0 = cert }
        return cert
    }

    /// Checks a certificate for this device as `installCertificate` does, without storing it.
    /// - Throws: `DeviceError.badCertificate`, saying why.
    public func checkCertificate(_ bytes: [UInt8], now: Date) throws -> DeviceCertificate {
        let cert: DeviceCertificate
        do { cert = try DeviceCertificate(bytes: bytes) } catch { throw DeviceError.badCertificate("not a device certificate (7F21): \(error)") }
        guard !trustedDeviceCAs.isEmpty else {
            throw DeviceError.badCertificate("no device-CA key was given at provisioning (kioskctl provision --device-ca-key KEY_ID=BASE64)")
        }
        guard trustedDeviceCAs[cert.caKeyID] != nil else { throw DeviceError.badCertificate("signed by CA key \"\(cert.caKeyID)\", which is not trusted here") }
        guard cert.verify(caKeys: trustedDeviceCAs) else { throw DeviceError.badCertificate("the CA signature does not verify") }
        guard cert.deviceID == config.deviceID else { throw DeviceError.badCertificate("it is for device \(cert.deviceID), this is \(config.deviceID)") }
        guard cert.devicePublicKey == [UInt8](signingKey.publicKey.rawRepresentation) else {
            throw DeviceError.badCertificate("it certifies another key than this device's")
        }
        guard cert.validFrom <= cert.validThrough else { throw DeviceError.badCertificate("valid from \(cert.validFrom) is after valid through \(cert.validThrough)") }
        let days = Int((cert.notAfter.timeIntervalSince(cert.notBefore) / 86_400).rounded())
        guard days <= Device.maximumCertificateDays else {
            throw DeviceError.badCertificate("it spans \(days) days; at most \(Device.maximumCertificateDays) are allowed")
        }
        guard now < cert.notAfter else { throw DeviceError.badCertificate("it ran out on \(cert.validThrough)") }
        return cert
    }

    /// The device-CA keys from provisioning, by key id (unreadable ones left out).
    public var trustedDeviceCAs: [String: Curve25519.Signing.PublicKey] {
        config.deviceCAKeys.compactMapValues { Data(base64Encoded: $0).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) } }
    }

    /// The snapshot authority keys from provisioning, by key id.
    public var trustedAuthorities: [String: Curve25519.Signing.PublicKey] {
        config.authorityKeys.compactMapValues { Data(base64Encoded: $0).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) } }
    }
    /// The card issuer keys from provisioning, by key id.
    public var trustedIssuers: [String: Curve25519.Signing.PublicKey] {
        config.issuerKeys.compactMapValues { Data(base64Encoded: $0).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) } }
    }
}

/// The clock, injectable: the system's, or a fixed instant for tests.
public struct KioskClock: Sendable {
    /// Reads the clock.
    public let now: @Sendable () -> Date
    /// A clock that reads `now`.
    public init(now: @escaping @Sendable () -> Date) { self.now = now }
    /// The system clock.
    public static let system = KioskClock { Date() }
    /// A clock stopped at `d`.
    public static func fixed(_ d: Date) -> KioskClock { KioskClock { d } }

    /// Whether this build reads the test hooks (`BENEFIT_KIOSK_TEST_NOW`,
    /// `BENEFIT_KIOSK_TEST_CRASH_AT`): debug builds (tests, demo) only. Release builds, which
    /// `install.sh` installs, are compiled without them (Package.swift defines
    /// `BENEFIT_KIOSK_TEST_HOOKS` for the debug configuration alone).
    public static var testHooksCompiledIn: Bool {
        #if BENEFIT_KIOSK_TEST_HOOKS
        return true
        #else
        return false
        #endif
    }

    /// `BENEFIT_KIOSK_TEST_NOW` (RFC 3339) in a debug build, for tests only; else the
    /// system clock.
    public static func fromEnvironment() throws -> KioskClock {
        #if BENEFIT_KIOSK_TEST_HOOKS
        guard let s = ProcessInfo.processInfo.environment["BENEFIT_KIOSK_TEST_NOW"] else { return .system }
        guard let d = Timestamp.date(s) else { throw DeviceError.badConfig("BENEFIT_KIOSK_TEST_NOW=\(s) is not RFC 3339") }
        return .fixed(d)
        #else
        return .system
        #endif
    }
}

/// Test-only fault injection: `BENEFIT_KIOSK_TEST_CRASH_AT=<point>` kills the process with
/// SIGKILL at that point of the deduction, as a power cut would.
/// Compiled into debug builds only (see `KioskClock.testHooksCompiledIn`).
enum FaultPoint {
    #if BENEFIT_KIOSK_TEST_HOOKS
    static let target = ProcessInfo.processInfo.environment["BENEFIT_KIOSK_TEST_CRASH_AT"]
    static func hit(_ name: String) {
        if target == name { kill(getpid(), SIGKILL) }
    }
    #else
    @inline(__always) static func hit(_ name: String) {}
    #endif
}
