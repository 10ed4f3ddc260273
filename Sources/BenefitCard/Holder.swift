import KioskProtocol
import Foundation
import SmartCard

/// Why a card is unreadable: it answered, but not as card spec §2–3 says.
public enum CardFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file's bytes are not BER-TLV.
    case malformedTLV(file: String, TLVError)
    /// The file's object has another tag than its template.
    case wrongTemplate(file: String, expected: UInt32, found: UInt32)
    /// A required field is absent.
    case missingField(tag: UInt32, name: String)
    /// A field appears twice.
    case duplicateField(tag: UInt32)
    /// A field breaks its rule (length, digits, date, UTF-8, …), and why.
    case invalidField(tag: UInt32, name: String, why: String)
    /// READ BINARY found no such file (`6A 82`).
    case fileMissing(String)
    /// The SELECT answer is not the FCI of §2, and why.
    case badFCI(String)
    /// A command (SELECT, READ BINARY) answered a status word the spec does not allow there.
    case unexpectedStatus(command: String, StatusWord)
    /// A command's answer has the wrong form, and why.
    case badAnswer(command: String, why: String)

    /// The error as one line naming the file or field (tags in hex).
    public var description: String {
        switch self {
        case .malformedTLV(let f, let e): return "\(f): malformed BER-TLV (\(e))"
        case .wrongTemplate(let f, let e, let x):
            return "\(f): template \(String(x, radix: 16, uppercase: true)) where \(String(e, radix: 16, uppercase: true)) is expected"
        case .missingField(let t, let n): return "field \(String(t, radix: 16, uppercase: true)) (\(n)) is missing"
        case .duplicateField(let t): return "field \(String(t, radix: 16, uppercase: true)) appears twice"
        case .invalidField(let t, let n, let why): return "field \(String(t, radix: 16, uppercase: true)) (\(n)): \(why)"
        case .fileMissing(let f): return "\(f) is missing"
        case .badFCI(let why): return "SELECT answer: \(why)"
        case .unexpectedStatus(let c, let sw): return "\(c) answered \(sw)"
        case .badAnswer(let c, let why): return "\(c) answered \(why)"
        }
    }
}

/// EF.HOLDER (template `70`), validated (card spec v2 §3.1). The citizen identity number
/// (`DF23`) is required and its GB 11643 check digit validated, but it is not kept: the
/// kiosk stores and derives nothing from it. Persons are known by `personRef` (`DF2A`).
public struct Holder: Sendable, Equatable {
    /// `DF21`: the card number, 16 digits.
    public var cardNumber: String
    /// `DF22`: the holder's name, 1–30 bytes of UTF-8.
    public var name: String
    /// `DF24`: the holder category.
    public var category: HolderCategory
    /// `DF25`: the issuing region, 6 digits.
    public var region: String
    /// `DF26`: the issue date.
    public var issued: CardDate
    /// `DF27`: the expiry date, not before the issue date.
    public var expires: CardDate
    /// `DF28`: the identifier of the issuer key that signed EF.HOLDER (1–32 ASCII bytes).
    public var issuerKeyID: String
    /// `DF29`: the card's raw 32-byte Ed25519 public key (§4, §5.4).
    public var cardPublicKey: [UInt8]
    /// `DF2A`, the platform's person reference: 32 lowercase hex digits.
    public var personRef: String
    /// `DF23` as a keyed digest of this process (`PatientIdentity`): only for matching a
    /// bill's patient in memory; the number itself is not kept.
    public var identityDigest: [UInt8]

    /// Valid through the end of `DF27`, China Standard Time.
    public func isExpired(at now: Date) -> Bool { now >= expires.endOfDayChinaStandardTime }

    /// Parses and validates the `70` object. Unknown tags are skipped.
    public init(object: TLV) throws {
        guard object.tag == 0x70 else { throw CardFormatError.wrongTemplate(file: "EF.HOLDER", expected: 0x70, found: object.tag) }
        let children: [TLV]
        do { children = try object.children() } catch let e as TLVError {
            throw CardFormatError.malformedTLV(file: "EF.HOLDER", e)
        }
        var fields: [UInt32: [UInt8]] = [:]
        for c in children where (0xDF21...0xDF2A).contains(c.tag) {
            guard fields[c.tag] == nil else { throw CardFormatError.duplicateField(tag: c.tag) }
            fields[c.tag] = c.value
        }
        func field(_ tag: UInt32, _ name: String) throws -> [UInt8] {
            guard let v = fields[tag] else { throw CardFormatError.missingField(tag: tag, name: name) }
            return v
        }
        func ascii(_ tag: UInt32, _ name: String, count: ClosedRange<Int>, digits: Bool) throws -> String {
            let v = try field(tag, name)
            guard count.contains(v.count) else {
                throw CardFormatError.invalidField(tag: tag, name: name, why: "length \(v.count), expected \(count.lowerBound == count.upperBound ? "\(count.lowerBound)" : "\(count.lowerBound)–\(count.upperBound)")")
            }
            let ok = digits ? v.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } : v.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
            guard ok else { throw CardFormatError.invalidField(tag: tag, name: name, why: digits ? "not all digits" : "not printable ASCII") }
            return String(decoding: v, as: UTF8.self)
        }
        cardNumber = try ascii(0xDF21, "card number", count: 16...16, digits: true)
        let nameBytes = try field(0xDF22, "holder name")
        guard (1...30).contains(nameBytes.count), let n = String(validatingUTF8: nameBytes.map { CChar(bitPattern: $0) } + [0]),
              !n.isEmpty, n.utf8.count == nameBytes.count else {
            throw CardFormatError.invalidField(tag: 0xDF22, name: "holder name", why: "not 1–30 bytes of UTF-8")
        }
        name = n
        let id = try ascii(0xDF23, "citizen identity number", count: 18...18, digits: false)
        guard let idDigest = PatientIdentity.digest(id) else {
            throw CardFormatError.invalidField(tag: 0xDF23, name: "citizen identity number", why: "GB 11643 check failed")
        }
        identityDigest = idDigest
        let cat = try field(0xDF24, "holder category")
        guard cat.count == 1 else { throw CardFormatError.invalidField(tag: 0xDF24, name: "holder category", why: "length \(cat.count), expected 1") }
        category = HolderCategory(code: cat[0])
        region = try ascii(0xDF25, "issuing region", count: 6...6, digits: true)
        let issuedText = try ascii(0xDF26, "issue date", count: 8...8, digits: true)
        guard let i = CardDate(issuedText) else { throw CardFormatError.invalidField(tag: 0xDF26, name: "issue date", why: "not a date") }
        issued = i
        let expiresText = try ascii(0xDF27, "expiry date", count: 8...8, digits: true)
        guard let e = CardDate(expiresText) else { throw CardFormatError.invalidField(tag: 0xDF27, name: "expiry date", why: "not a date") }
        guard e >= i else { throw CardFormatError.invalidField(tag: 0xDF27, name: "expiry date", why: "before the issue date") }
        expires = e
        issuerKeyID = try ascii(0xDF28, "issuer key identifier", count: 1...32, digits: false)
        let pk = try field(0xDF29, "card public key")
        guard pk.count == 32 else { throw CardFormatError.invalidField(tag: 0xDF29, name: "card public key", why: "length \(pk.count), expected 32") }
        cardPublicKey = pk
        let ref = try field(0xDF2A, "person reference")
        guard ref.count == 16 else { throw CardFormatError.invalidField(tag: 0xDF2A, name: "person reference", why: "length \(ref.count), expected 16") }
        personRef = Hex.encode(ref)
    }
}
