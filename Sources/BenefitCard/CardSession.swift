import Crypto
import Foundation
import SmartCard

/// A failure of one card session, typed for the layers above.
public enum CardError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Neither application is on the card (`6A 82` to both SELECTs).
    case notABenefitCard
    /// The card answered, but not as card spec §2–3 says (decision `card_unreadable`).
    case unreadable(CardFormatError)
    /// The card left the reader, was reset or lost power mid-command (decision `card_removed`).
    case cardRemoved
    /// The reader went away.
    case readerGone
    /// pcscd is not there.
    case serviceUnavailable
    /// The card's answer broke the transport rules.
    case transport(TransportError)
    /// Any other PC/SC failure.
    case pcsc(PCSCError)
    /// The card refused the EF.USAGE write: `69 85` stale sequence, `6A 80` malformed, or other.
    case writeRefused(StatusWord)

    public var description: String {
        switch self {
        case .notABenefitCard: return "not a benefit card: neither the medical nor the legal aid application answers"
        case .unreadable(let e): return "card unreadable: \(e)"
        case .cardRemoved: return "the card left the reader"
        case .readerGone: return "the reader went away"
        case .serviceUnavailable: return "the PC/SC service (pcscd) is not running"
        case .transport(let e): return "card transport error: \(e)"
        case .pcsc(let e): return "\(e)"
        case .writeRefused(let sw):
            switch sw.value {
            case 0x6985: return "the card refused the usage write: stale or replayed sequence (69 85)"
            case 0x6A80: return "the card refused the usage write: malformed record (6A 80)"
            default: return "the card refused the usage write (\(sw))"
            }
        }
    }

    /// Wraps whatever a channel threw.
    public init(_ error: Error) {
        switch error {
        case let e as CardError: self = e
        case let e as PCSCError:
            if e.isCardGone { self = .cardRemoved }
            else if e.isReaderGone { self = .readerGone }
            else if e == .noService || e == .serviceStopped { self = .serviceUnavailable }
            else { self = .pcsc(e) }
        case let e as TransportError: self = .transport(e)
        case let e as CardFormatError: self = .unreadable(e)
        default: self = .pcsc(.other(code: 0))
        }
    }
}

/// The keys a terminal trusts, put there by provisioning (issuers) and by the snapshot (devices).
public struct TrustStore: @unchecked Sendable {
    public var issuerKeys: [String: Curve25519.Signing.PublicKey]
    public var deviceKeys: [String: Curve25519.Signing.PublicKey]
    public init(issuerKeys: [String: Curve25519.Signing.PublicKey] = [:], deviceKeys: [String: Curve25519.Signing.PublicKey] = [:]) {
        self.issuerKeys = issuerKeys
        self.deviceKeys = deviceKeys
    }
}

/// Why a card is not authentic (decision `card_not_authentic`).
public enum NotAuthenticReason: Sendable, Equatable, CustomStringConvertible {
    case unknownIssuerKey(String)
    case issuerSignatureInvalid
    case internalAuthenticateFailed
    case internalAuthenticateRefused(StatusWord)

    public var code: String {
        switch self {
        case .unknownIssuerKey: return "issuer_key_unknown"
        case .issuerSignatureInvalid: return "issuer_signature_invalid"
        case .internalAuthenticateFailed: return "internal_authenticate_failed"
        case .internalAuthenticateRefused: return "internal_authenticate_refused"
        }
    }

    public var description: String {
        switch self {
        case .unknownIssuerKey(let id): return "issuer key \"\(id)\" is not trusted"
        case .issuerSignatureInvalid: return "issuer signature over EF.HOLDER does not verify (data altered or forged)"
        case .internalAuthenticateFailed: return "INTERNAL AUTHENTICATE answer does not verify with the card key (cloned card)"
        case .internalAuthenticateRefused(let sw): return "INTERNAL AUTHENTICATE refused (\(sw))"
        }
    }
}

public enum Authenticity: Sendable, Equatable {
    case authentic
    case notAuthentic(NotAuthenticReason)
    public var isAuthentic: Bool { self == .authentic }
}

/// Where the 32-byte INTERNAL AUTHENTICATE challenges come from; injectable for tests.
public protocol ChallengeSource {
    mutating func challenge() -> [UInt8]
}

/// Fresh challenges from the system's cryptographic random source.
public struct SystemChallengeSource: ChallengeSource {
    public init() {}
    public mutating func challenge() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
    }
}

/// Everything read from a card.
public struct CardReadout: Sendable, Equatable {
    public var type: CardType
    public var holder: Holder
    /// The exact bytes of the `70` object as read, padding excluded: what the issuer signed.
    public var holderObject: [UInt8]
    public var issuerSignature: [UInt8]
    /// EF.USAGE, medical cards only.
    public var usage: UsageRecord?
}

/// One session with one card: select, read, authenticate, write (card spec §2–5).
/// It never sends a command before the application is selected in this session.
public final class CardSession {
    public let channel: CardChannel
    public private(set) var selected: CardType?

    public init(channel: CardChannel) { self.channel = channel }

    private func send(_ command: CommandAPDU) throws -> ResponseAPDU {
        do { return try channel.transmit(command) } catch { throw CardError(error) }
    }

    /// SELECT medical, then legal aid (§2). Throws `.notABenefitCard` when neither answers.
    @discardableResult
    public func select() throws -> CardType {
        for type in CardType.selectionOrder {
            let r = try send(CommandAPDU(ins: 0xA4, p1: 0x04, p2: 0x00, data: type.aid, le: 0x00))
            if r.status == .fileNotFound { continue }
            guard r.status.isSuccess else {
                throw CardError.unreadable(.unexpectedStatus(command: "SELECT \(type.rawValue)", r.status))
            }
            try CardSession.checkFCI(r.data, for: type)
            selected = type
            return type
        }
        throw CardError.notABenefitCard
    }

    static func checkFCI(_ data: [UInt8], for type: CardType) throws {
        do {
            let (fci, _) = try TLV.parseSingle(data)
            guard fci.tag == 0x6F else { throw CardError.unreadable(.badFCI("no 6F template")) }
            let children = try fci.children()
            guard let aid = children.first(tag: 0x84), aid.value == type.aid else {
                throw CardError.unreadable(.badFCI("AID (84) missing or not the selected one"))
            }
            guard let a5 = children.first(tag: 0xA5) else { throw CardError.unreadable(.badFCI("no A5 template")) }
            let prop = try a5.children()
            guard let cardType = prop.first(tag: 0xDF01), cardType.value == [type.typeByte] else {
                throw CardError.unreadable(.badFCI("card type (DF01) missing or not \(type.typeByte)"))
            }
            if let version = prop.first(tag: 0x9F08), version.value.first != 0x01 {
                throw CardError.unreadable(.badFCI("application version \(version.value.hexString) is not 1.x"))
            }
        } catch let e as TLVError {
            throw CardError.unreadable(.badFCI("malformed (\(e))"))
        }
    }

    /// READ BINARY by SFI (§3); nil when the card says the file is not there (`6A 82`).
    public func readFile(sfi: UInt8) throws -> [UInt8]? {
        precondition(selected != nil, "select the application first")
        let r = try send(CommandAPDU(ins: 0xB0, p1: 0x80 | sfi, p2: 0x00, le: 0x00))
        if r.status == .fileNotFound { return nil }
        guard r.status.isSuccess else {
            throw CardError.unreadable(.unexpectedStatus(command: "READ BINARY SFI \(sfi)", r.status))
        }
        return r.data
    }

    /// Selects and reads EF.HOLDER, EF.SIGNATURE and (medical) EF.USAGE, and validates them.
    public func read() throws -> CardReadout {
        let type = try selected ?? select()
        guard let holderFile = try readFile(sfi: 0x01) else { throw CardError.unreadable(.fileMissing("EF.HOLDER")) }
        let holderTLV: TLV, holderBytes: [UInt8]
        do { (holderTLV, holderBytes) = try TLV.parseSingle(holderFile) } catch let e as TLVError {
            throw CardError.unreadable(.malformedTLV(file: "EF.HOLDER", e))
        }
        let holder: Holder
        do { holder = try Holder(object: holderTLV) } catch let e as CardFormatError { throw CardError.unreadable(e) }

        guard let sigFile = try readFile(sfi: 0x02) else { throw CardError.unreadable(.fileMissing("EF.SIGNATURE")) }
        let signature: [UInt8]
        do {
            let (sigTLV, _) = try TLV.parseSingle(sigFile)
            guard sigTLV.tag == 0x71 else {
                throw CardError.unreadable(.wrongTemplate(file: "EF.SIGNATURE", expected: 0x71, found: sigTLV.tag))
            }
            guard let s = try sigTLV.children().first(tag: 0xDF31), s.value.count == 64 else {
                throw CardError.unreadable(.invalidField(tag: 0xDF31, name: "issuer signature", why: "missing or not 64 bytes"))
            }
            signature = s.value
        } catch let e as TLVError {
            throw CardError.unreadable(.malformedTLV(file: "EF.SIGNATURE", e))
        }

        var usage: UsageRecord?
        if type == .medical {
            guard let usageFile = try readFile(sfi: 0x03) else { throw CardError.unreadable(.fileMissing("EF.USAGE")) }
            do { usage = try UsageRecord(fileBytes: usageFile) } catch let e as CardFormatError { throw CardError.unreadable(e) }
        }
        return CardReadout(type: type, holder: holder, holderObject: holderBytes, issuerSignature: signature, usage: usage)
    }

    /// INTERNAL AUTHENTICATE (§4): the card's 64-byte answer to `challenge`.
    public func internalAuthenticate(challenge: [UInt8]) throws -> ResponseAPDU {
        precondition(selected != nil, "select the application first")
        precondition(challenge.count == 32, "challenges are 32 bytes")
        return try send(CommandAPDU(ins: 0x88, p1: 0x00, p2: 0x00, data: challenge, le: 0x00))
    }

    /// Checks the issuer signature over EF.HOLDER (§3.2), then INTERNAL AUTHENTICATE
    /// with a fresh challenge (§4). Card failures mid-way throw; a wrong answer is a verdict.
    public func authenticate<C: ChallengeSource>(_ readout: CardReadout, trust: TrustStore, challenges: inout C) throws -> Authenticity {
        guard let issuer = trust.issuerKeys[readout.holder.issuerKeyID] else {
            return .notAuthentic(.unknownIssuerKey(readout.holder.issuerKeyID))
        }
        guard issuer.isValidSignature(readout.issuerSignature, for: readout.holderObject) else {
            return .notAuthentic(.issuerSignatureInvalid)
        }
        let challenge = challenges.challenge()
        let r = try internalAuthenticate(challenge: challenge)
        guard r.status.isSuccess else { return .notAuthentic(.internalAuthenticateRefused(r.status)) }
        guard r.data.count == 64, let cardKey = try? Curve25519.Signing.PublicKey(rawRepresentation: readout.holder.cardPublicKey) else {
            return .notAuthentic(.internalAuthenticateFailed)
        }
        let message = Array("CARD-AUTH-V1".utf8) + Array(readout.holder.cardNumber.utf8) + challenge
        return cardKey.isValidSignature(r.data, for: message) ? .authentic : .notAuthentic(.internalAuthenticateFailed)
    }

    /// UPDATE BINARY of EF.USAGE (§5). Throws `.writeRefused` for `69 85`/`6A 80`/others and
    /// `.cardRemoved` when the card left: the caller cannot tell then whether it was written.
    public func writeUsage(_ object: [UInt8]) throws {
        precondition(selected == .medical, "EF.USAGE is on medical cards")
        let r = try send(CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0x00, data: object))
        guard r.status.isSuccess else { throw CardError.writeRefused(r.status) }
    }
}
