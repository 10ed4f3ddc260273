import BenefitCard
import Crypto
import Foundation
import VirtualCard

/// The spec's test vectors (`specs/vectors`), one copy for every test target and the bench,
/// read from this target's own bundle so nothing outside the package is needed at run time.
public enum Vectors {
    public struct VectorCard: Decodable {
        public var card_number: String, name: String, citizen_id: String, category: String, region: String
        public var issued: String, expires: String, type: String, id_hash: String, card_public_key: String
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
