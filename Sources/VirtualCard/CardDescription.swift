import BenefitCard
import Foundation
import SmartCard

/// A card to emulate, as `vectors/cards.json` describes one (card spec v2): its application,
/// the exact file contents, its private key and the device CA keys it was personalised
/// with (`ca_keys`, medical cards; absent means none). Extra fields are ignored.
public struct CardDescription: Codable, Sendable, Equatable {
    /// A device CA public key the card holds (§5.2), by its identifier.
    public struct CAKey: Codable, Sendable, Equatable {
        /// The key's identifier (`key_id`), as a device certificate names its CA.
        public var keyID: String
        /// Base64 of the raw 32-byte Ed25519 key.
        public var publicKey: String
        enum CodingKeys: String, CodingKey { case keyID = "key_id", publicKey = "public_key" }
        /// A CA key from its identifier and base64 public key.
        public init(keyID: String, publicKey: String) { self.keyID = keyID; self.publicKey = publicKey }
    }
    /// The card's files as hex (card spec §3).
    public struct Files: Codable, Sendable, Equatable {
        /// EF.HOLDER (SFI 1): the `70` object, hex.
        public var holder: String
        /// EF.SIGNATURE (SFI 2), hex.
        public var signature: String
        /// EF.USAGE (SFI 3), hex; nil for a card without one (legal aid).
        public var usage: String?
        /// The files from their hex contents.
        public init(holder: String, signature: String, usage: String? = nil) {
            self.holder = holder; self.signature = signature; self.usage = usage
        }
    }
    /// The card number (16 digits).
    public var cardNumber: String
    /// The application's AID in hex: the medical or the legal-aid one (card spec §2).
    public var aid: String
    /// Base64 of the card's 32-byte Ed25519 private key seed (its public key is `DF29`).
    public var cardPrivateSeed: String
    /// The contents of the card's files.
    public var files: Files
    /// The device CA keys the card trusts for PSO VERIFY CERTIFICATE (§5.2); empty when none.
    public var caKeys: [CAKey]
    /// The holder's name, for listings only (the card's own is in EF.HOLDER).
    public var name: String?
    /// What the card is for in the vectors (`"card reported lost; …"`), for listings only.
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case cardNumber = "card_number", aid, cardPrivateSeed = "card_private_seed", files, caKeys = "ca_keys", name, note
    }

    /// A description from its fields; no CA keys unless given.
    public init(cardNumber: String, aid: String, cardPrivateSeed: String, files: Files, caKeys: [CAKey] = [],
                name: String? = nil, note: String? = nil) {
        self.cardNumber = cardNumber; self.aid = aid; self.cardPrivateSeed = cardPrivateSeed
        self.files = files; self.caKeys = caKeys; self.name = name; self.note = note
    }

    /// Reads a card object; `ca_keys`, `name` and `note` may be absent, other fields are ignored.
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

    /// Decodes every card of `{"cards":[…]}`, `[…]` or one card object.
    /// - Throws: `DecodingError` when the data is none of the three.
    public static func decode(_ data: Data) throws -> [CardDescription] {
        struct Wrapper: Decodable { var cards: [CardDescription] }
        let decoder = JSONDecoder()
        if let w = try? decoder.decode(Wrapper.self, from: data) { return w.cards }
        if let list = try? decoder.decode([CardDescription].self, from: data) { return list }
        return [try decoder.decode(CardDescription.self, from: data)]
    }
}

/// Why a description cannot make a `CardEmulator`.
public enum CardDescriptionError: Error, CustomStringConvertible {
    /// The field (`aid`, `files.holder`, …) is not hex.
    case badHex(field: String)
    /// `card_private_seed` is not base64 of a 32-byte seed.
    case badSeed
    /// The AID is neither of card spec v2's.
    case unknownAID(String)
    /// The `ca_keys` entry of this identifier is not base64 of a 32-byte Ed25519 public key.
    case badCAKey(String)
    /// The error as one line.
    public var description: String {
        switch self {
        case .badHex(let f): return "card description: \(f) is not hex"
        case .badSeed: return "card description: card_private_seed is not a base64 32-byte seed"
        case .unknownAID(let a): return "card description: AID \(a) is not one of card spec v2"
        case .badCAKey(let id): return "card description: ca_keys entry \(id) is not a base64 32-byte Ed25519 public key"
        }
    }
}
