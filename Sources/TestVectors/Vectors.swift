import BenefitCard
import Crypto
import Foundation
import VirtualCard

/// The spec's test vectors (`specs/vectors`), one copy for every test target and the bench,
/// read from this target's own bundle so nothing outside the package is needed at run time.
public enum Vectors {
    public struct VectorCard: Decodable {
        public var card_number: String, name: String, citizen_id: String, category: String, region: String
        public var issued: String, expires: String, type: String, person_ref: String, card_public_key: String
        public var internal_authenticate: [String: String]
    }
    public struct CardsFile: Decodable { public var cards: [VectorCard] }

    /// A fixture file by name, e.g. `snapshot-small.jsonl`.
    public static func url(_ name: String) -> URL { Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)! }
    public static func data(_ name: String) -> Data { try! Data(contentsOf: url(name)) }
    /// A JSON fixture as an object.
    public static func json(_ name: String) -> [String: Any] { try! JSONSerialization.jsonObject(with: data(name)) as! [String: Any] }

    public static let cardsData = data("cards.json")
    public static let cards = try! JSONDecoder().decode(CardsFile.self, from: cardsData).cards
    public static let descriptions = try! CardDescription.decode(cardsData)
    /// `test-keys.json` (TEST KEYS ONLY): issuer, authority, devices, id salt.
    public static let keys = json("test-keys.json")
    /// The test devices' `private_seed` and `public_key`, base64, by device id.
    public static var devices: [String: [String: String]] { keys["devices"] as! [String: [String: String]] }

    public static func publicKey(_ b64: String) -> Curve25519.Signing.PublicKey {
        try! Curve25519.Signing.PublicKey(rawRepresentation: Data(base64Encoded: b64)!)
    }
    public static func privateKey(_ b64: String) -> Curve25519.Signing.PrivateKey {
        try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(base64Encoded: b64)!)
    }
    public static var issuer: (id: String, key: Curve25519.Signing.PublicKey) {
        let i = keys["issuer"] as! [String: String]
        return (i["key_id"]!, publicKey(i["public_key"]!))
    }
    /// A test device's raw 32-byte seed, as `Device.provision` takes it.
    public static func seed(_ id: String) -> Data { Data(base64Encoded: devices[id]!["private_seed"]!)! }
    public static func device(_ id: String) -> (public: Curve25519.Signing.PublicKey, private: Curve25519.Signing.PrivateKey) {
        let d = devices[id]!
        return (publicKey(d["public_key"]!), privateKey(d["private_seed"]!))
    }
    public static var trust: TrustStore {
        TrustStore(issuerKeys: [issuer.id: issuer.key],
                   deviceKeys: ["KSK-TEST-0001": device("KSK-TEST-0001").public, "KSK-TEST-0002": device("KSK-TEST-0002").public])
    }
    public static func description(_ number: String) -> CardDescription { descriptions.first { $0.cardNumber == number }! }
    public static func emulator(_ number: String, _ m: Misbehaviour = Misbehaviour()) -> CardEmulator {
        try! CardEmulator(description: description(number), misbehaviour: m)
    }

    /// `write-vectors.json`: card writes APDU by APDU (card spec §5.2–5.4).
    public struct WriteVectors: Decodable {
        public struct Key: Decodable { public var key_id: String, public_key: String, private_seed: String? }
        public struct Step: Decodable { public var command: String, apdu: String, response: String?, sw: String }
        public struct Case: Decodable {
            public var name: String, what: String, card_number: String, stored_usage: String, usage_after: String
            public var steps: [Step]
            public var several_checks_fail: Bool?
        }
        public struct Write: Decodable {
            public var card_number: String, device_id: String, now: String, bill_fen: Int64, certificate: String, challenge: String
            public var usage_object: String, signed_message: String, ack_message: String, ack: String, apdus: [String]
        }
        public var ca_keys: [Key]
        public var rogue_ca: Key
        public var write: Write
        public var cases: [Case]
    }
    public static let writeVectors = try! JSONDecoder().decode(WriteVectors.self, from: data("write-vectors.json"))

    /// The device CA of `test-keys.json` (TEST KEY): identifier and key pair.
    public static var deviceCA: (id: String, public: Curve25519.Signing.PublicKey, private: Curve25519.Signing.PrivateKey) {
        let c = keys["device_ca"] as! [String: String]
        return (c["key_id"]!, publicKey(c["public_key"]!), privateKey(c["private_seed"]!))
    }
    /// A test device's certificate (`7F21`) as `test-keys.json` gives it, and its validity.
    public static func certificate(_ id: String) -> (bytes: [UInt8], validFrom: String, validThrough: String) {
        let d = devices[id]!
        return ([UInt8](hex: d["certificate"]!)!, d["certificate_valid_from"]!, d["certificate_valid_through"]!)
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
