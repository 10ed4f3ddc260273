import BenefitCard
import Crypto
import Foundation
import SmartCard
import VirtualCard

/// The spec's test vectors, copied into this target's fixtures.
enum Vectors {
    struct VectorCard: Decodable {
        var card_number: String, name: String, citizen_id: String, category: String, region: String
        var issued: String, expires: String, type: String, id_hash: String, card_public_key: String
        var internal_authenticate: [String: String]
    }
    struct CardsFile: Decodable { var cards: [VectorCard] }

    static func url(_ name: String) -> URL { Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)! }
    static let cardsData = try! Data(contentsOf: url("cards.json"))
    static let cards = try! JSONDecoder().decode(CardsFile.self, from: cardsData).cards
    static let descriptions = try! CardDescription.decode(cardsData)
    static let keys = try! JSONSerialization.jsonObject(with: Data(contentsOf: url("test-keys.json"))) as! [String: Any]

    static func publicKey(_ b64: String) -> Curve25519.Signing.PublicKey {
        try! Curve25519.Signing.PublicKey(rawRepresentation: Data(base64Encoded: b64)!)
    }
    static func privateKey(_ b64: String) -> Curve25519.Signing.PrivateKey {
        try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(base64Encoded: b64)!)
    }
    static var issuer: (id: String, key: Curve25519.Signing.PublicKey) {
        let i = keys["issuer"] as! [String: String]
        return (i["key_id"]!, publicKey(i["public_key"]!))
    }
    static func device(_ id: String) -> (public: Curve25519.Signing.PublicKey, private: Curve25519.Signing.PrivateKey) {
        let d = (keys["devices"] as! [String: [String: String]])[id]!
        return (publicKey(d["public_key"]!), privateKey(d["private_seed"]!))
    }
    static var trust: TrustStore {
        TrustStore(issuerKeys: [issuer.id: issuer.key],
                   deviceKeys: ["KSK-TEST-0001": device("KSK-TEST-0001").public, "KSK-TEST-0002": device("KSK-TEST-0002").public])
    }
    static func description(_ number: String) -> CardDescription { descriptions.first { $0.cardNumber == number }! }
    static func emulator(_ number: String, _ m: Misbehaviour = Misbehaviour()) -> CardEmulator {
        try! CardEmulator(description: description(number), misbehaviour: m)
    }
}

/// Always the same challenge: the vectors' `00 01 … 1F`.
struct FixedChallenge: ChallengeSource {
    mutating func challenge() -> [UInt8] { Array(0..<32) }
}

/// Counts challenges so a test can see a fresh one is drawn per session.
struct RecordingChallenges: ChallengeSource {
    var drawn: [[UInt8]] = []
    var inner = SystemChallengeSource()
    mutating func challenge() -> [UInt8] { let c = inner.challenge(); drawn.append(c); return c }
}
