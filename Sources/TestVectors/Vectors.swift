import BenefitCard
import Crypto
import Foundation
import VirtualCard

/// The spec's test vectors (`specs/vectors`), one copy for every test target and the bench,
/// read from this target's own bundle so nothing outside the package is needed at run time.
public enum Vectors {
    public struct VectorCard: Decodable, Sendable {
        public var card_number: String, name: String, citizen_id: String, category: String, region: String
        public var issued: String, expires: String, type: String, person_ref: String, card_public_key: String
        public var internal_authenticate: [String: String]
    }
    public struct CardsFile: Decodable, Sendable { public var cards: [VectorCard] }

    /// A fixture file by name, e.g. `snapshot-small.jsonl`.
    public static func url(_ name: String) -> URL { bundled { try fixtureURL(name) } }
    public static func data(_ name: String) -> Data { bundled { try loadData(name) } }
    /// A JSON fixture as an object.
    public static func json(_ name: String) -> [String: Any] { bundled { try loadJSON(name) } }

    public static let cardsData = data("cards.json")
    public static let cards = bundled { try JSONDecoder().decode(CardsFile.self, from: cardsData).cards }
    public static let descriptions = bundled { try CardDescription.decode(cardsData) }
    /// `test-keys.json` (TEST KEYS ONLY): issuer, authority, devices, id salt.
    /// Read at each use (a small file): a `[String: Any]` cannot be a shared constant.
    public static var keys: [String: Any] { json("test-keys.json") }
    /// The test devices' `private_seed` and `public_key`, base64, by device id.
    public static var devices: [String: [String: String]] { bundled { try entry(keys, "devices") } }

    public static func publicKey(_ b64: String) -> Curve25519.Signing.PublicKey { bundled { try loadPublicKey(b64) } }
    public static func privateKey(_ b64: String) -> Curve25519.Signing.PrivateKey { bundled { try loadPrivateKey(b64) } }
    public static var issuer: (id: String, key: Curve25519.Signing.PublicKey) {
        bundled {
            let i: [String: String] = try entry(keys, "issuer")
            return (try entry(i, "key_id"), try loadPublicKey(try entry(i, "public_key")))
        }
    }
    /// A test device's raw 32-byte seed, as `Device.provision` takes it.
    public static func seed(_ id: String) -> Data { bundled { try deviceSeed(id) } }
    public static func device(_ id: String) -> (public: Curve25519.Signing.PublicKey, private: Curve25519.Signing.PrivateKey) {
        bundled {
            let d = try deviceEntry(id)
            return (try loadPublicKey(try entry(d, "public_key")), try loadPrivateKey(try entry(d, "private_seed")))
        }
    }
    public static var trust: TrustStore {
        TrustStore(issuerKeys: [issuer.id: issuer.key],
                   deviceKeys: ["KSK-TEST-0001": device("KSK-TEST-0001").public, "KSK-TEST-0002": device("KSK-TEST-0002").public])
    }
    public static func description(_ number: String) -> CardDescription { bundled { try cardDescription(number) } }
    public static func emulator(_ number: String, _ m: Misbehaviour = Misbehaviour()) -> CardEmulator {
        bundled { try makeEmulator(number, m) }
    }

    // MARK: Throwing accessors
    //
    // The non-throwing accessors above are for the bundled fixtures, which are always there
    // (and for the bench). A lookup by a name or number the vectors may not hold goes through
    // these: a wrong one fails the one test that asked, with what was missing, instead of
    // stopping the whole test run.

    /// Something a test asked of the vectors that they do not hold.
    public struct FixtureError: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// A fixture file by name; throws when the bundle has no such file.
    public static func fixtureURL(_ name: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil) else {
            throw FixtureError("no fixture \(name)")
        }
        return url
    }
    public static func loadData(_ name: String) throws -> Data { try Data(contentsOf: fixtureURL(name)) }
    /// A JSON fixture as an object; throws when it is missing or not a JSON object.
    public static func loadJSON(_ name: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: loadData(name)) as? [String: Any] else {
            throw FixtureError("\(name) is not a JSON object")
        }
        return object
    }
    /// `object[key]` as a `T`; throws when it is absent or of another type.
    public static func entry<T>(_ object: [String: Any], _ key: String, as type: T.Type = T.self) throws -> T {
        guard let value = object[key] as? T else { throw FixtureError("no \(key) (\(T.self)) in \(object.keys.sorted())") }
        return value
    }
    public static func entry(_ object: [String: String], _ key: String) throws -> String {
        guard let value = object[key] else { throw FixtureError("no \(key) in \(object.keys.sorted())") }
        return value
    }
    public static func loadPublicKey(_ b64: String) throws -> Curve25519.Signing.PublicKey {
        guard let raw = Data(base64Encoded: b64) else { throw FixtureError("not base64: \(b64)") }
        return try Curve25519.Signing.PublicKey(rawRepresentation: raw)
    }
    public static func loadPrivateKey(_ b64: String) throws -> Curve25519.Signing.PrivateKey {
        guard let raw = Data(base64Encoded: b64) else { throw FixtureError("not base64 (a private seed)") }
        return try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
    }
    /// The card of `cards.json` with this number.
    public static func card(_ number: String) throws -> VectorCard {
        guard let c = cards.first(where: { $0.card_number == number }) else { throw FixtureError("no card \(number) in cards.json") }
        return c
    }
    /// The emulator's description of the card of `cards.json` with this number.
    public static func cardDescription(_ number: String) throws -> CardDescription {
        guard let d = descriptions.first(where: { $0.cardNumber == number }) else { throw FixtureError("no card \(number) in cards.json") }
        return d
    }
    public static func makeEmulator(_ number: String, _ m: Misbehaviour = Misbehaviour()) throws -> CardEmulator {
        try CardEmulator(description: cardDescription(number), misbehaviour: m)
    }
    /// A test device of `test-keys.json`: `public_key`, `private_seed`, `certificate`, … (base64 or hex).
    public static func deviceEntry(_ id: String) throws -> [String: String] {
        guard let d = devices[id] else { throw FixtureError("no device \(id) in test-keys.json") }
        return d
    }
    /// A test device's raw 32-byte seed.
    public static func deviceSeed(_ id: String) throws -> Data {
        guard let seed = Data(base64Encoded: try entry(deviceEntry(id), "private_seed")) else { throw FixtureError("\(id): seed not base64") }
        return seed
    }

    /// For the bundled fixtures, which are always there (static accessors, a test target's
    /// `static let`s): stops here, saying what was missing, rather than at a bare `!`. Inside a
    /// test, use the throwing accessors with `try` instead.
    public static func bundled<T>(_ body: () throws -> T) -> T {
        do { return try body() } catch { preconditionFailure("test vectors: \(error)") }
    }

    /// `write-vectors.json`: card writes APDU by APDU (card spec §5.2–5.4).
    public struct WriteVectors: Decodable, Sendable {
        public struct Key: Decodable, Sendable { public var key_id: String, public_key: String, private_seed: String? }
        public struct Step: Decodable, Sendable { public var command: String, apdu: String, response: String?, sw: String }
        public struct Case: Decodable, Sendable {
            public var name: String, what: String, card_number: String, stored_usage: String, usage_after: String
            public var steps: [Step]
            public var several_checks_fail: Bool?
        }
        public struct Write: Decodable, Sendable {
            public var card_number: String, device_id: String, now: String, bill_fen: Int64, certificate: String, challenge: String
            public var usage_object: String, signed_message: String, ack_message: String, ack: String, apdus: [String]
        }
        public var ca_keys: [Key]
        public var rogue_ca: Key
        public var write: Write
        public var cases: [Case]
    }
    public static let writeVectors = bundled { try JSONDecoder().decode(WriteVectors.self, from: loadData("write-vectors.json")) }

    /// The device CA of `test-keys.json` (TEST KEY): identifier and key pair.
    public static var deviceCA: (id: String, public: Curve25519.Signing.PublicKey, private: Curve25519.Signing.PrivateKey) {
        bundled {
            let c: [String: String] = try entry(keys, "device_ca")
            return (try entry(c, "key_id"), try loadPublicKey(try entry(c, "public_key")), try loadPrivateKey(try entry(c, "private_seed")))
        }
    }
    /// A test device's certificate (`7F21`) as `test-keys.json` gives it, and its validity.
    public static func certificate(_ id: String) -> (bytes: [UInt8], validFrom: String, validThrough: String) {
        bundled { try deviceCertificate(id) }
    }
    public static func deviceCertificate(_ id: String) throws -> (bytes: [UInt8], validFrom: String, validThrough: String) {
        let d = try deviceEntry(id)
        guard let bytes = [UInt8](hex: try entry(d, "certificate")) else { throw FixtureError("\(id): certificate not hex") }
        return (bytes, try entry(d, "certificate_valid_from"), try entry(d, "certificate_valid_through"))
    }

    /// Where `swift build` put the products (`kioskctl`, `kioskd`, …): beside this target's
    /// resource bundle, so tests can run the real executables without a path of their own.
    public static var productsDirectory: URL { Bundle.module.bundleURL.deletingLastPathComponent() }
}

/// Always the same challenge: the vectors' `00 01 … 1F`.
public struct FixedChallenge: ChallengeSource {
    public init() {}
    public mutating func challenge() -> [UInt8] { Array(0..<32) }
}

/// Counts challenges so a test can see a fresh one is drawn per session.
public struct RecordingChallenges: ChallengeSource {
    public var drawn: [[UInt8]] = []
    public var inner = SystemChallengeSource()
    public init() {}
    public mutating func challenge() -> [UInt8] { let c = inner.challenge(); drawn.append(c); return c }
}
