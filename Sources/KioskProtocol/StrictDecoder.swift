import Foundation

/// `Decodable` request types read strictly (issue 22 item 3): the body must be one JSON object
/// (RFC 8259, `StrictJSON`) with no key twice and no key the type does not know, whose values
/// the type reads as strings, integers without fraction or exponent, `true`, `false` or `null`
/// (a list, an object or `1.0` is a mismatch); then the type checks its own bytes.
public enum StrictDecoder {
    /// Why a body was refused, in words a caller can answer with (`400`).
    public struct Failure: Error, CustomStringConvertible, Equatable, Sendable {
        /// The reason.
        public var description: String
        /// A refusal saying `description`.
        public init(_ description: String) { self.description = description }
    }

    /// Decodes `T` from `bytes`.
    /// - Parameter keys: every key `T` reads; any other key in the body is refused.
    /// - Throws: `Failure` for a body that is not such an object, an unknown key, a value of
    ///   the wrong type or a missing one, and whatever `T`'s own checks throw as `Failure`.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], keys: Set<String>) throws(Failure) -> T {
        guard let members = StrictJSON.flatMembers(bytes) else { throw Failure("the body is not a JSON object") }
        var object: [String: StrictJSON.Value?] = [:]
        for (key, value) in members {
            guard object.updateValue(value, forKey: key) == nil else { throw Failure("\(key) is given twice") }
        }
        let unknown = Set(object.keys).subtracting(keys)
        guard unknown.isEmpty else { throw Failure("unknown fields: \(unknown.sorted().joined(separator: ", "))") }
        do {
            return try T(from: FlatDecoder(object: object))
        } catch let f as Failure {
            throw f
        } catch let DecodingError.keyNotFound(key, _) {
            throw Failure("\(key.stringValue) is missing")
        } catch let DecodingError.typeMismatch(type, context) {
            let key = context.codingPath.last?.stringValue ?? "a field"
            throw Failure("\(key) must be \(type == String.self ? "a string" : type == Bool.self ? "true or false" : type == StrictJSON.Value.self ? "a string or an integer" : "an integer")")
        } catch let DecodingError.valueNotFound(_, context) {
            throw Failure("\(context.codingPath.last?.stringValue ?? "a field") must not be null")
        } catch {
            throw Failure("\(error)")
        }
    }
}

/// A `Decoder` over one flat object: keyed containers only.
struct FlatDecoder: Decoder {
    /// The members; nil for a value that is not flat (a list, an object, a fraction): any
    /// type read from it is a mismatch.
    let object: [String: StrictJSON.Value?]
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Keyed<Key>(object: object))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "a flat object has no lists"))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        throw DecodingError.typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "a flat object is keyed"))
    }

    /// The object's values by key, each read as exactly its JSON type.
    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let object: [String: StrictJSON.Value?]
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

        func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

        func value(_ key: Key) throws -> StrictJSON.Value {
            guard let v = object[key.stringValue] else {
                throw DecodingError.keyNotFound(key, .init(codingPath: [key], debugDescription: "missing"))
            }
            guard let flat = v else {
                throw DecodingError.typeMismatch(StrictJSON.Value.self, .init(codingPath: [key], debugDescription: "not a string, an integer or a literal"))
            }
            return flat
        }

        func mismatch<T>(_ type: T.Type, _ key: Key) -> DecodingError {
            DecodingError.typeMismatch(type, .init(codingPath: [key], debugDescription: "wrong type"))
        }

        func decodeNil(forKey key: Key) throws -> Bool { try value(key) == .null }

        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            guard case .bool(let b) = try value(key) else { throw mismatch(type, key) }
            return b
        }

        func decode(_ type: String.Type, forKey key: Key) throws -> String {
            guard case .string(let s) = try value(key) else { throw mismatch(type, key) }
            return s
        }

        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 {
            guard case .integer(let i) = try value(key) else { throw mismatch(type, key) }
            return i
        }

        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { Int(try decode(Int64.self, forKey: key)) }

        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
            let i = try decode(Int64.self, forKey: key)
            guard i >= 0 else { throw mismatch(type, key) }
            return UInt64(i)
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            switch type {
            case is String.Type: return try decode(String.self, forKey: key) as! T
            case is Int64.Type: return try decode(Int64.self, forKey: key) as! T
            case is Int.Type: return try decode(Int.self, forKey: key) as! T
            case is UInt64.Type: return try decode(UInt64.self, forKey: key) as! T
            case is Bool.Type: return try decode(Bool.self, forKey: key) as! T
            default: throw mismatch(type, key)
            }
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            throw mismatch([String: Any].self, key)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { throw mismatch([Any].self, key) }
        func superDecoder() throws -> any Decoder { FlatDecoder(object: object) }
        func superDecoder(forKey key: Key) throws -> any Decoder { FlatDecoder(object: object) }
    }
}
