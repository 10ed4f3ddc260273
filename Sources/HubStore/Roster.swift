import Crypto
import KioskProtocol
import Foundation
import HubRules

/// What the hub knows of the region (snapshot spec v2 §1 records, as the platform's roster
/// holds them): programs, devices with their institution and status, persons, and cards with
/// their `person_ref` and the card's public key (`DF29`), which verifies `card_ack`.
public struct Roster: Sendable, Equatable {
    /// A registered device: its key, institution, status and region.
    public struct Device: Sendable, Equatable {
        /// The device key: it signs the device's batches and sync requests.
        public var publicKey: Curve25519.Signing.PublicKey
        /// The device's institution; nil when registered without one (`--device ID=KEY`):
        /// then no `medical_subsidy` of it can name the right institution.
        public var institution: String?
        /// `active` or `retired`.
        public var status: String
        /// The region whose roster registered the device (a snapshot's or a stored change's);
        /// nil for one given on the command line (`--device`): such a device uploads but is
        /// given no region's snapshots (`wrong_region`, issue 21 item 4).
        public var region: String?
        /// Equal when key, institution, status and region are.
        public static func == (a: Device, b: Device) -> Bool {
            a.publicKey.rawRepresentation == b.publicKey.rawRepresentation && a.institution == b.institution && a.status == b.status
                && a.region == b.region
        }
    }

    /// A program as the hub checks records against it.
    public struct Program: Sendable, Equatable {
        /// `medical` or `legal_aid`.
        public var cardType: String
        /// Medical programs only.
        public var limitFen: Int64?
        /// A legal-aid program's matter codes (empty for a medical one).
        public var matters: [String]
    }

    /// A person (keyed by `person_ref`).
    public struct Person: Sendable, Equatable {
        /// `active`, `suspended` or `revoked`.
        public var status: String
        /// The codes of the programs the person is entitled to.
        public var programs: [String]
    }

    /// A card (keyed by its number).
    public struct Card: Sendable, Equatable {
        /// The card's person.
        public var personRef: String
        /// `active`, `lost`, `revoked` or `replaced`.
        public var status: String
        /// The card's Ed25519 public key (`DF29`, 32 bytes); nil when the roster line has none.
        public var publicKey: [UInt8]?
    }

    /// Why a roster file, a stored line or a `--device` option cannot be read.
    public enum LoadError: Error, CustomStringConvertible, Equatable {
        /// The file cannot be read.
        case unreadable(String)
        /// A header that is not `benefit-snapshot` format_version 2.
        case notVersion2(path: String, line: Int)
        /// A record the loader refuses, with why (`line` 0 for a stored line).
        case badRecord(path: String, line: Int, why: String)
        /// A device key that is not base64 of an Ed25519 public key.
        case badKey(deviceID: String)
        /// A `--device` option not of the form `ID=BASE64[,INSTITUTION]`.
        case badOption(String)
        /// The refusal in one line.
        public var description: String {
            switch self {
            case .unreadable(let p): return "cannot read \(p)"
            case .notVersion2(let p, let n): return "\(p) line \(n): not a benefit-snapshot of format_version 2"
            case .badRecord(let p, let n, let why): return "\(p) line \(n): \(why)"
            case .badKey(let id): return "device \(id): public_key is not a base64 Ed25519 key"
            case .badOption(let o): return "--device \(o): expected ID=BASE64[,INSTITUTION]"
            }
        }
    }

    /// Devices by device id.
    public private(set) var devices: [String: Device] = [:]
    /// Programs by code.
    public private(set) var programs: [String: Program] = [:]
    /// Persons by `person_ref`.
    public private(set) var persons: [String: Person] = [:]
    /// Cards by card number.
    public private(set) var cards: [String: Card] = [:]

    /// An empty roster.
    public init() {}

    /// A roster of these entries only (a batch's view, issue 21 item 5).
    init(programs: [String: Program], cards: [String: Card]) {
        self.programs = programs
        self.cards = cards
    }

    /// The device with this id, or nil.
    public subscript(deviceID: String) -> Device? { devices[deviceID] }

    /// Adds (or replaces) a device; `publicKey` is base64 of the 32-byte Ed25519 key.
    public mutating func add(deviceID: String, publicKey: String, institution: String? = nil, status: String = "active",
                             region: String? = nil) throws {
        guard let raw = Data(base64Encoded: publicKey), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw LoadError.badKey(deviceID: deviceID)
        }
        devices[deviceID] = Device(publicKey: key, institution: institution, status: status, region: region)
    }

    /// `ID=BASE64[,INSTITUTION]`, as `settlement-hub --device` takes it (an active device).
    public mutating func add(option: String) throws {
        guard let eq = option.firstIndex(of: "="), eq != option.startIndex else { throw LoadError.badOption(option) }
        let rest = option[option.index(after: eq)...]
        let parts = rest.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false)
        guard let key = parts.first, !key.isEmpty else { throw LoadError.badOption(option) }
        let institution = parts.count > 1 ? String(parts[1]) : nil
        if institution?.isEmpty == true { throw LoadError.badOption(option) }
        try add(deviceID: String(option[..<eq]), publicKey: String(key), institution: institution)
    }

    /// Every `program`, `device`, `person` and `card` record of a snapshot-format file (JSON
    /// Lines, snapshot spec v2; a later file's entry replaces an earlier one's). Read line by
    /// line; a header of another format or version is refused; unknown types are skipped.
    /// The file's signature is not checked here: the operator names the roster it trusts.
    public mutating func load(snapshot path: String) throws {
        var lineNumber = 0
        var region: String?
        do {
            try LineReader.each(URL(fileURLWithPath: path)) { line in
                lineNumber += 1
                guard !line.isEmpty else { return }
                guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw LoadError.badRecord(path: path, line: lineNumber, why: "not a JSON object")
                }
                if o["type"] as? String == "header" { region = o["region"] as? String }
                try add(record: o, path: path, line: lineNumber, region: region)
            }
        } catch let e as LoadError {
            throw e
        } catch {
            throw LoadError.unreadable(path)
        }
    }

    /// Stored roster lines added on top, each replacing its key's entry. A line the loader
    /// refuses (stored before changes were checked with these rules, or written into the
    /// database by someone else) is skipped and described in the result, for an operator
    /// alert: it never stalls the roster (issue 21 item 4).
    public mutating func add(storedLines lines: [(region: String, line: String)]) -> [String] {
        var skipped: [String] = []
        for (region, line) in lines {
            do {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw LoadError.badRecord(path: "roster_entry", line: 0, why: "not a JSON object")
                }
                try add(record: o, path: "roster_entry", line: 0, region: region)
            } catch {
                skipped.append("region \(region): \(error): \(line.prefix(120))")
            }
        }
        return skipped
    }

    /// A roster of one stored line, nil when the loader refuses it (a lookup's answer).
    public static func reading(_ stored: (region: String, line: String)) -> Roster? {
        var r = Roster()
        return r.add(storedLines: [stored]).isEmpty ? r : nil
    }

    mutating func add(record o: [String: Any], path: String, line: Int, region: String? = nil) throws {
        func bad(_ why: String) -> LoadError { .badRecord(path: path, line: line, why: why) }
        switch o["type"] as? String {
        case "header":
            guard o["format"] as? String == "benefit-snapshot", RecordRules.integer(o["format_version"]) == 2 else {
                throw LoadError.notVersion2(path: path, line: line)
            }
        case "program":
            guard let code = o["code"] as? String, let cardType = o["card_type"] as? String else { throw bad("program without code or card_type") }
            let limit = RecordRules.integer(o["limit_fen"])
            if cardType == "medical" && limit == nil { throw bad("medical program \(code) without limit_fen") }
            let matters = (o["matters"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
            programs[code] = Program(cardType: cardType, limitFen: limit, matters: matters)
        case "device":
            guard let id = o["device_id"] as? String, let key = o["public_key"] as? String else { throw bad("device without device_id or public_key") }
            try add(deviceID: id, publicKey: key, institution: o["institution"] as? String, status: o["status"] as? String ?? "active",
                    region: region)
        case "person":
            guard let ref = o["person_ref"] as? String else { throw bad("person without person_ref") }
            persons[ref] = Person(status: o["status"] as? String ?? "active", programs: o["programs"] as? [String] ?? [])
        case "card":
            guard let number = o["card_number"] as? String, let ref = o["person_ref"] as? String else { throw bad("card without card_number or person_ref") }
            var key: [UInt8]?
            if let text = o["public_key"] as? String {
                guard let raw = Data(base64Encoded: text), raw.count == 32 else { throw bad("card \(number): public_key is not base64 of 32 bytes") }
                key = Array(raw)
            }
            cards[number] = Card(personRef: ref, status: o["status"] as? String ?? "active", publicKey: key)
        default:
            break
        }
    }
}
