import BenefitCard
import Foundation
import SmartCard

/// A card to emulate, as `vectors/cards.json` describes one: its application, the exact
/// file contents and its private key. Extra fields are ignored.
public struct CardDescription: Codable, Sendable, Equatable {
    public struct Files: Codable, Sendable, Equatable {
        public var holder: String
        public var signature: String
        public var usage: String?
    }
    public var cardNumber: String
    public var aid: String
    public var cardPrivateSeed: String
    public var files: Files
    public var name: String?
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case cardNumber = "card_number", aid, cardPrivateSeed = "card_private_seed", files, name, note
    }

    public init(cardNumber: String, aid: String, cardPrivateSeed: String, files: Files, name: String? = nil, note: String? = nil) {
        self.cardNumber = cardNumber; self.aid = aid; self.cardPrivateSeed = cardPrivateSeed
        self.files = files; self.name = name; self.note = note
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
    public var description: String {
        switch self {
        case .badHex(let f): return "card description: \(f) is not hex"
        case .badSeed: return "card description: card_private_seed is not a base64 32-byte seed"
        case .unknownAID(let a): return "card description: AID \(a) is not one of card spec v1"
        }
    }
}
