import BenefitCard
import Foundation
import SmartCard

/// A card to emulate, as `vectors/cards.json` describes one (card spec v2): its application,
/// the exact file contents, its private key and the device CA keys it was personalised
/// with (`ca_keys`, medical cards; absent means none). Extra fields are ignored.
public struct CardDescription: Codable, Sendable, Equatable {
    /// A device CA public key the card holds (§5.2), by its identifier.
    public struct CAKey: Codable, Sendable, Equatable {
        public var keyID: String
        /// Base64 of the raw 32-byte Ed25519 key.
        public var publicKey: String
        enum CodingKeys: String, CodingKey { case keyID = "key_id", publicKey = "public_key" }
        public init(keyID: String, publicKey: String) { self.keyID = keyID; self.publicKey = publicKey }
    }
    public struct Files: Codable, Sendable, Equatable {
        public var holder: String
        public var signature: String
        public var usage: String?
        public init(holder: String, signature: String, usage: String? = nil) {
            self.holder = holder; self.signature = signature; self.usage = usage
        }
    }
    public var cardNumber: String
    public var aid: String
    public var cardPrivateSeed: String
    public var files: Files
    public var caKeys: [CAKey]
    public var name: String?
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case cardNumber = "card_number", aid, cardPrivateSeed = "card_private_seed", files, caKeys = "ca_keys", name, note
    }

    public init(cardNumber: String, aid: String, cardPrivateSeed: String, files: Files, caKeys: [CAKey] = [],
                name: String? = nil, note: String? = nil) {
        self.cardNumber = cardNumber; self.aid = aid; self.cardPrivateSeed = cardPrivateSeed
        self.files = files; self.caKeys = caKeys; self.name = name; self.note = note
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cardNumber = try c.decode(String.self, forKey: .cardNumber)
        aid = try c.decode(String.self, forKey: .aid)
        cardPrivateSeed = try c.decode(String.self, forKey: .cardPrivateSeed)
        files = try c.decode(Files.self, forKey: .files)
        caKeys = try c.decodeIfPresent([CAKey].self, forKey: .caKeys) ?? []
        name = try c.decodeIfPresent(String.self, forKey: .name)
        note = try c.decodeIfPresent(String.self, forKey: .note)
    }

    /// Loads every card of a file holding `{"cards":[…]}`, `[…]` or one card object.
    public static func load(from url: URL) throws -> [CardDescription] {
        try decode(Data(contentsOf: url))
    }

    public static func decode(_ data: Data) throws -> [CardDescription] {
        struct Wrapper: Decodable { var cards: [CardDescription] }
        let decoder = JSONDecoder()
        if let w = try? decoder.decode(Wrapper.self, from: data) { return w.cards }
        if let list = try? decoder.decode([CardDescription].self, from: data) { return list }
        return [try decoder.decode(CardDescription.self, from: data)]
    }
}

public enum CardDescriptionError: Error, CustomStringConvertible {
    case badHex(field: String)
    case badSeed
    case unknownAID(String)
    case badCAKey(String)
    public var description: String {
        switch self {
        case .badHex(let f): return "card description: \(f) is not hex"
        case .badSeed: return "card description: card_private_seed is not a base64 32-byte seed"
        case .unknownAID(let a): return "card description: AID \(a) is not one of card spec v2"
        case .badCAKey(let id): return "card description: ca_keys entry \(id) is not a base64 32-byte Ed25519 public key"
        }
    }
}
