import KioskProtocol
import ArgumentParser
import BenefitCard
import Crypto
import Foundation
import KioskCore
import SmartCard

struct Card: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look at the card on a reader.",
        subcommands: [Inspect.self]
    )
}

/// Trusted keys for card checks: from `--trust-file` (or the state folder's
/// `trust.json`) and `--issuer-key`/`--device-key` options.
struct TrustOptions: ParsableArguments {
    @Option(help: "JSON file of trusted keys: {\"issuers\":{ID:BASE64},\"devices\":{ID:BASE64}} (test-keys.json form also read). Default: STATE_DIR/trust.json.")
    var trustFile: String?

    @Option(help: "A trusted issuer key, KEY_ID=BASE64 (repeatable).")
    var issuerKey: [String] = []

    @Option(help: "A known device key for usage records, DEVICE_ID=BASE64 (repeatable).")
    var deviceKey: [String] = []

    @Option(help: "State folder (default /var/lib/benefit-kiosk, or BENEFIT_KIOSK_STATE_DIR).")
    var stateDir: String?

    func validate() throws {
        for k in issuerKey + deviceKey where TrustOptions.parsePair(k) == nil {
            throw ValidationError("'\(k)' is not ID=BASE64 of a 32-byte Ed25519 public key")
        }
    }

    static func parsePair(_ text: String) -> (String, Curve25519.Signing.PublicKey)? {
        guard let eq = text.firstIndex(of: "=") else { return nil }
        let id = String(text[..<eq])
        guard !id.isEmpty, let data = Data(base64Encoded: String(text[text.index(after: eq)...])),
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: data) else { return nil }
        return (id, key)
    }

    var resolvedStateDir: String {
        stateDir ?? ProcessInfo.processInfo.environment["BENEFIT_KIOSK_STATE_DIR"] ?? "/var/lib/benefit-kiosk"
    }

    func load() throws -> TrustStore {
        var store = TrustStore()
        let path = trustFile ?? (resolvedStateDir as NSString).appendingPathComponent("trust.json")
        if trustFile != nil || FileManager.default.fileExists(atPath: path) {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CommandFailure(message: "cannot read trust file \(path)", status: .usage)
            }
            do { store = try TrustFile.parse(data) } catch {
                throw CommandFailure(message: "trust file \(path): \(error)", status: .usage)
            }
        }
        for k in issuerKey { if let (id, key) = TrustOptions.parsePair(k) { store.issuerKeys[id] = key } }
        for k in deviceKey { if let (id, key) = TrustOptions.parsePair(k) { store.deviceKeys[id] = key } }
        return store
    }
}

/// Reads trusted keys from JSON.
enum TrustFile {
    struct Failure: Error, CustomStringConvertible { var description: String }

    static func parse(_ data: Data) throws -> TrustStore {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Failure(description: "not a JSON object")
        }
        func key(_ any: Any?, _ what: String) throws -> Curve25519.Signing.PublicKey {
            guard let s = any as? String, let d = Data(base64Encoded: s), let k = try? Curve25519.Signing.PublicKey(rawRepresentation: d) else {
                throw Failure(description: "\(what) is not a base64 Ed25519 public key")
            }
            return k
        }
        var store = TrustStore()
        for (id, v) in root["issuers"] as? [String: Any] ?? [:] { store.issuerKeys[id] = try key(v, "issuer \(id)") }
        if let issuer = root["issuer"] as? [String: Any], let id = issuer["key_id"] as? String {
            store.issuerKeys[id] = try key(issuer["public_key"], "issuer \(id)")
        }
        for (id, v) in root["devices"] as? [String: Any] ?? [:] {
            let k = (v as? [String: Any])?["public_key"] ?? v
            store.deviceKeys[id] = try key(k, "device \(id)")
        }
        return store
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read and authenticate the card: holder (masked), authenticity verdict and why, usage record."
    )

    @OptionGroup var readerOptions: ReaderOptions
    @OptionGroup var trustOptions: TrustOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let trust: TrustStore
        do { trust = try trustOptions.load() } catch let f as CommandFailure { try fail(f) }
        let report: InspectReport
        do {
            report = try InspectReport.make(readerOptions: readerOptions, trust: trust, now: try TestClock.now())
        } catch let f as CommandFailure {
            if json { printJSON(["error": f.status == .unreadable ? "card_unreadable" : "no_card", "detail": f.message]) }
            try fail(f)
        }
        if json { printJSON(report.json) } else { print(report.text) }
        if !report.authenticity.isAuthentic { throw ExitCode(ExitStatus.notAuthentic.rawValue) }
    }
}

/// The clock: KioskCore's (the system's; `BENEFIT_KIOSK_TEST_NOW` in debug builds only).
enum TestClock {
    static func now() throws -> Date {
        do { return try KioskClock.fromEnvironment().now() } catch {
            FileHandle.standardError.write(Data("kioskctl: \(error)\n".utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }
    }
}

struct InspectReport {
    var reader: String
    var atr: [UInt8]
    var readout: CardReadout
    var authenticity: Authenticity
    var usageTrust: UsageTrust?
    var now: Date

    static func make(readerOptions: ReaderOptions, trust: TrustStore, now: Date) throws -> InspectReport {
        let ctx: PCSCContext
        do { ctx = try PCSCContext() } catch { throw pcscFailure(error) }
        let reader: String
        do { reader = try pickReader(ctx, readerOptions) } catch let f as CommandFailure { throw f } catch { throw pcscFailure(error) }
        do {
            let connection = try ctx.connect(reader: reader)
            let atr = try connection.atr()
            return try connection.withTransaction { channel in
                let session = CardSession(channel: readerOptions.traced(channel))
                let readout = try session.read()
                var challenges = SystemChallengeSource()
                let verdict = try session.authenticate(readout, trust: trust, challenges: &challenges)
                return InspectReport(reader: reader, atr: atr, readout: readout, authenticity: verdict,
                                     usageTrust: readout.usage?.trust(cardNumber: readout.holder.cardNumber, deviceKeys: trust.deviceKeys), now: now)
            }
        } catch {
            switch CardError(error) {
            case .unreadable, .notABenefitCard, .transport:
                throw CommandFailure(message: "\(CardError(error))", status: .unreadable)
            default: throw pcscFailure(error)
            }
        }
    }

    static func pickReader(_ ctx: PCSCContext, _ o: ReaderOptions) throws -> String {
        let readers = try ctx.readers()
        if let r = o.reader {
            guard readers.contains(r) else {
                throw CommandFailure(message: "no reader named \"\(r)\" (readers: \(readers.joined(separator: ", ")))", status: .noCard)
            }
            return r
        }
        let usable = readers.filter(o.filter.accepts)
        guard let r = usable.first(where: { (try? ctx.readerState($0).cardPresent) == true }) else {
            throw CommandFailure(message: usable.isEmpty ? "no reader" : "no card on any reader (\(usable.joined(separator: ", ")))", status: .noCard)
        }
        return r
    }

    var holder: Holder { readout.holder }

    func yuan(_ fen: Int64) -> String { String(format: "%lld.%02lld", fen / 100, fen % 100) }

    var json: [String: Any] {
        var o: [String: Any] = [
            "reader": reader, "atr": atr.hexString,
            "card_type": readout.type.rawValue,
            "card_number": Masking.cardNumber(holder.cardNumber),
            "holder_name": Masking.name(holder.name),
            "person_ref": holder.personRef,
            "category": holder.category.codeString,
            "region": holder.region,
            "issued": holder.issued.description,
            "expires": holder.expires.description,
            "expired": holder.isExpired(at: now),
            "issuer_key_id": holder.issuerKeyID,
            "authentic": authenticity.isAuthentic,
        ]
        if case .notAuthentic(let why) = authenticity {
            o["decision"] = "card_not_authentic"
            o["reason"] = why.code
            o["reason_detail"] = why.description
        } else if holder.isExpired(at: now) {
            o["decision"] = "card_expired"
        }
        if let usage = readout.usage {
            var u: [String: Any] = ["sequence": Int(usage.sequence), "trust": usageTrust?.description ?? ""]
            if let b = usage.body {
                u["period"] = b.period
                u["terminal"] = b.terminalID
                u["written_at"] = b.writtenAt
                u["entries"] = b.entries.map { ["program": $0.program, "used_fen": $0.usedFen] }
            } else {
                u["entries"] = [Any]()
            }
            if case .untrusted = usageTrust { u["trusted"] = false } else { u["trusted"] = true }
            o["usage"] = u
        }
        return o
    }

    var text: String {
        var lines: [String] = []
        func row(_ k: String, _ v: String) { lines.append(k.padding(toLength: 15, withPad: " ", startingAt: 0) + v) }
        row("Reader:", reader)
        row("Card:", "\(readout.type.chineseName) (\(readout.type.rawValue)), ATR \(atr.hexString)")
        row("Card number:", Masking.cardNumber(holder.cardNumber))
        row("Holder:", Masking.name(holder.name))
        row("Person ref:", holder.personRef)
        row("Category:", holder.category.description)
        row("Region:", holder.region)
        row("Valid:", "\(holder.issued) to \(holder.expires)" + (holder.isExpired(at: now) ? "  EXPIRED (card_expired)" : ""))
        row("Issuer key:", holder.issuerKeyID)
        switch authenticity {
        case .authentic:
            row("Authenticity:", "AUTHENTIC: issuer signature verifies; card answered INTERNAL AUTHENTICATE with its own key")
        case .notAuthentic(let why):
            row("Authenticity:", "NOT AUTHENTIC (card_not_authentic): \(why)")
        }
        if let usage = readout.usage {
            if let b = usage.body {
                row("Usage record:", "period \(b.period), sequence \(usage.sequence), written \(b.writtenAt) by \(b.terminalID)")
                row("", usageTrust?.description ?? "")
                for e in b.entries { row("", "\(e.program): used \(yuan(e.usedFen)) yuan (\(e.usedFen) fen)") }
            } else {
                row("Usage record:", "empty (new card, sequence 0)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
