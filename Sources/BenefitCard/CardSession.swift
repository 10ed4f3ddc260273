import Crypto
import Foundation
import KioskProtocol
import SmartCard

/// The three commands of a write (card spec v2 §5.2), named as in the spec.
public enum WriteCommand: String, Sendable, Equatable, CaseIterable {
    /// Step 1: the device certificate given to the card.
    case verifyCertificate = "PSO VERIFY CERTIFICATE"
    /// Step 2: the card's challenge for `DF48`.
    case getChallenge = "GET CHALLENGE"
    /// Step 3: the new EF.USAGE record written.
    case updateBinary = "UPDATE BINARY"
}

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
    /// The card refused a command of the write sequence (§5.2–5.3): decision `card_write_refused`,
    /// nothing written, nothing deducted.
    case writeRefused(WriteCommand, StatusWord)
    /// UPDATE BINARY answered `90 00` without a valid acknowledgement (§5.4): a torn write
    /// (§6 step 7), the deduction stays pending until the card shows the record.
    case writeUnacknowledged(String)
    /// The terminal used the session wrongly (a programming error, reported instead of a trap).
    case misuse(String)
    /// An error of no known kind reached the session; its type and text are kept.
    case unexpected(String)

    /// The failure in words; a refused write names the command, the status word and what it means.
    public var description: String {
        switch self {
        case .notABenefitCard: return "not a benefit card: neither the medical nor the legal aid application answers"
        case .unreadable(let e): return "card unreadable: \(e)"
        case .cardRemoved: return "the card left the reader"
        case .readerGone: return "the reader went away"
        case .serviceUnavailable: return "the PC/SC service (pcscd) is not running"
        case .transport(let e): return "card transport error: \(e)"
        case .pcsc(let e): return "\(e)"
        case .writeRefused(let command, let sw):
            return "the card refused \(command.rawValue) with \(CardError.spaced(sw)): \(CardError.meaning(of: sw, for: command))"
        case .writeUnacknowledged(let why): return "the card answered the usage write without a valid acknowledgement (torn write): \(why)"
        case .misuse(let why): return "card session misused: \(why)"
        case .unexpected(let what): return "unexpected error in the card session: \(what)"
        }
    }

    static func spaced(_ sw: StatusWord) -> String { Hex.encode([sw.sw1], uppercase: true) + " " + Hex.encode([sw.sw2], uppercase: true) }

    /// What a refusal means, by command and status word (card spec v2 §5.2–5.3).
    public static func meaning(of sw: StatusWord, for command: WriteCommand) -> String {
        switch (command, sw.value) {
        case (.verifyCertificate, 0x6982):
            return "device certificate not accepted (CA signature wrong, CA key unknown to the card, malformed, or it expired before the card's last write)"
        case (.getChallenge, _):
            return "no challenge drawn"
        case (.updateBinary, 0x6982):
            return "security status not satisfied: no certificate verified or no challenge drawn in this session, "
                + "DF44 not the certificate's device, DF48 not the challenge, DF46 does not verify, "
                + "or DF45 outside the certificate's validity / DF41 not DF45's year"
        case (.updateBinary, 0x6985):
            return "conditions not satisfied: sequence not the stored one + 1, or a lower used amount, a dropped program, "
                + "an earlier written-at or an earlier period than the card holds"
        case (.updateBinary, 0x6A80):
            return "malformed record (not the objects of §5.1 in order with their lengths)"
        case (_, 0x6581): return "memory failure"
        case (_, 0x6A82): return "no such file or application on this card"
        case (_, 0x6700): return "wrong length"
        case (_, 0x6D00): return "command not supported by the card"
        default: return "refused"
        }
    }

    /// Wraps whatever a channel threw. Errors of no known kind stay visible as `.unexpected`.
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
        default: self = .unexpected("\(String(reflecting: type(of: error))): \(error)")
        }
    }
}

/// The keys a terminal trusts, put there by provisioning (issuers) and by the snapshot (devices).
public struct TrustStore: Sendable {
    /// The card issuers' keys by identifier (`DF28`), from provisioning: they verify EF.SIGNATURE (§3.2).
    public var issuerKeys: [String: Curve25519.Signing.PublicKey]
    /// The devices' keys by device identifier (`DF44`), from the snapshot: they verify `DF46` (§5.5).
    public var deviceKeys: [String: Curve25519.Signing.PublicKey]
    /// A trust store; no keys unless given.
    public init(issuerKeys: [String: Curve25519.Signing.PublicKey] = [:], deviceKeys: [String: Curve25519.Signing.PublicKey] = [:]) {
        self.issuerKeys = issuerKeys
        self.deviceKeys = deviceKeys
    }
}

/// Why a card is not authentic (decision `card_not_authentic`).
public enum NotAuthenticReason: Sendable, Equatable, CustomStringConvertible {
    /// `DF28` names an issuer key that is not trusted.
    case unknownIssuerKey(String)
    /// The issuer signature over EF.HOLDER does not verify.
    case issuerSignatureInvalid
    /// The INTERNAL AUTHENTICATE answer does not verify with `DF29` (a clone, or a relay).
    case internalAuthenticateFailed
    /// The card refused INTERNAL AUTHENTICATE with this status word.
    case internalAuthenticateRefused(StatusWord)

    /// A stable code for the reason (`issuer_key_unknown`, …), for alerts and logs.
    public var code: String {
        switch self {
        case .unknownIssuerKey: return "issuer_key_unknown"
        case .issuerSignatureInvalid: return "issuer_signature_invalid"
        case .internalAuthenticateFailed: return "internal_authenticate_failed"
        case .internalAuthenticateRefused: return "internal_authenticate_refused"
        }
    }

    /// The reason in words.
    public var description: String {
        switch self {
        case .unknownIssuerKey(let id): return "issuer key \"\(id)\" is not trusted"
        case .issuerSignatureInvalid: return "issuer signature over EF.HOLDER does not verify (data altered or forged)"
        case .internalAuthenticateFailed: return "INTERNAL AUTHENTICATE answer does not verify with the card key (cloned card)"
        case .internalAuthenticateRefused(let sw): return "INTERNAL AUTHENTICATE refused (\(sw))"
        }
    }
}

/// The verdict of `CardSession.authenticate` (card spec §3.2, §4).
public enum Authenticity: Sendable, Equatable {
    /// The issuer signature and the card's answer both verify.
    case authentic
    /// The card is not authentic, and why (decision `card_not_authentic`).
    case notAuthentic(NotAuthenticReason)
    /// Whether the verdict is `authentic`.
    public var isAuthentic: Bool { self == .authentic }
}

/// Where the 32-byte INTERNAL AUTHENTICATE challenges come from; injectable for tests.
public protocol ChallengeSource {
    /// The next challenge: 32 bytes, fresh for every session.
    mutating func challenge() -> [UInt8]
}

/// Fresh challenges from the system's cryptographic random source.
public struct SystemChallengeSource: ChallengeSource {
    /// The system's random source.
    public init() {}
    /// 32 random bytes from `SystemRandomNumberGenerator`.
    public mutating func challenge() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
    }
}

/// Everything read from a card.
public struct CardReadout: Sendable, Equatable {
    /// The application selected.
    public var type: CardType
    /// EF.HOLDER, validated.
    public var holder: Holder
    /// The exact bytes of the `70` object as read, padding excluded: what the issuer signed.
    public var holderObject: [UInt8]
    /// EF.SIGNATURE's `DF31`: the issuer's 64-byte Ed25519 signature over `holderObject`.
    public var issuerSignature: [UInt8]
    /// EF.USAGE, medical cards only.
    public var usage: UsageRecord?
}

/// One session with one card: select, read, authenticate, write (card spec v2 §2–5).
/// It never sends a command before the application is selected in this session.
public final class CardSession {
    /// The channel to the card (a PC/SC connection or an emulator).
    public let channel: CardChannel
    /// The application selected in this session; nil before `select()`.
    public private(set) var selected: CardType?

    /// A session over `channel`; nothing is sent until `select()` or `read()`.
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
            guard let version = prop.first(tag: 0x9F08), version.value.count == 2, version.value[0] == 0x02 else {
                let v = prop.first(tag: 0x9F08)?.value.hexString ?? "missing"
                throw CardError.unreadable(.badFCI("application version (9F08) \(v) is not 2.x"))
            }
        } catch let e as TLVError {
            throw CardError.unreadable(.badFCI("malformed (\(e))"))
        }
    }

    /// READ BINARY by SFI (§3); nil when the card says the file is not there (`6A 82`).
    public func readFile(sfi: UInt8) throws -> [UInt8]? {
        guard selected != nil else { throw CardError.misuse("READ BINARY before SELECT") }
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
        guard selected != nil else { throw CardError.misuse("INTERNAL AUTHENTICATE before SELECT") }
        guard challenge.count == 32 else { throw CardError.misuse("INTERNAL AUTHENTICATE challenges are 32 bytes, not \(challenge.count)") }
        return try send(CommandAPDU(ins: 0x88, p1: 0x00, p2: 0x00, data: challenge, le: 0x00))
    }

    /// "CARD-AUTH-V2" ‖ card number ‖ challenge ‖ SHA-256 of the EF.USAGE object (§4).
    public static func authMessage(cardNumber: String, challenge: [UInt8], usageDigest: [UInt8]) -> [UInt8] {
        SigningMessage.cardAuthentication(cardNumber: cardNumber, challenge: challenge, usageDigest: usageDigest)
    }

    /// The digest INTERNAL AUTHENTICATE signs for what was read: of EF.USAGE's object, or of
    /// `72 00` for a legal-aid card (no EF.USAGE).
    public static func usageDigest(of readout: CardReadout) -> [UInt8] {
        readout.usage?.digest ?? UsageRecord.empty.digest
    }

    /// Checks the issuer signature over EF.HOLDER (§3.2), then INTERNAL AUTHENTICATE with a
    /// fresh challenge over the digest of the EF.USAGE read (§4): a clone, or a relay that
    /// shows an older EF.USAGE, is not authentic. Card failures mid-way throw; a wrong answer is a verdict.
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
        let message = CardSession.authMessage(cardNumber: readout.holder.cardNumber, challenge: challenge,
                                              usageDigest: CardSession.usageDigest(of: readout))
        return cardKey.isValidSignature(r.data, for: message) ? .authentic : .notAuthentic(.internalAuthenticateFailed)
    }

    private func requireMedical(_ command: WriteCommand) throws {
        guard let selected else { throw CardError.misuse("\(command.rawValue) before SELECT") }
        guard selected == .medical else { throw CardError.misuse("\(command.rawValue) on a \(selected.rawValue) card: only medical cards hold EF.USAGE") }
    }

    /// PSO VERIFY CERTIFICATE (§5.2 step 1): the card holds the device's identifier and key
    /// for this session. Throws `.writeRefused(.verifyCertificate, sw)` when the card refuses.
    public func verifyCertificate(_ certificate: DeviceCertificate) throws {
        try requireMedical(.verifyCertificate)
        guard certificate.encoded.count <= 255 else { throw CardError.misuse("certificate of \(certificate.encoded.count) bytes does not fit a short APDU") }
        let r = try send(CommandAPDU(ins: 0x2A, p1: 0x00, p2: 0xBE, data: certificate.encoded))
        guard r.status.isSuccess else { throw CardError.writeRefused(.verifyCertificate, r.status) }
    }

    /// GET CHALLENGE (§5.2 step 2): 16 fresh bytes, to be written as `DF48`.
    public func getChallenge() throws -> [UInt8] {
        try requireMedical(.getChallenge)
        let r = try send(CommandAPDU(ins: 0x84, p1: 0x00, p2: 0x00, le: 0x10))
        guard r.status.isSuccess else { throw CardError.writeRefused(.getChallenge, r.status) }
        guard r.data.count == 16 else {
            throw CardError.unreadable(.badAnswer(command: WriteCommand.getChallenge.rawValue, why: "\(r.data.count) bytes, expected 16"))
        }
        return r.data
    }

    /// "USAGE-ACK-V2" ‖ card number ‖ DF43 ‖ DF48 (§5.4).
    public static func ackMessage(cardNumber: String, sequence: UInt32, challenge: [UInt8]) -> [UInt8] {
        SigningMessage.usageAcknowledgement(cardNumber: cardNumber, sequence: sequence, challenge: challenge)
    }

    /// UPDATE BINARY of EF.USAGE with Le = 00 (§5.2 step 3) and the card's acknowledgement
    /// verified with `cardPublicKey` (`DF29`, §5.4). Returns the 64-byte acknowledgement.
    /// Throws `.writeRefused(.updateBinary, sw)` on any refusal (nothing written),
    /// `.writeUnacknowledged` on `90 00` without a valid acknowledgement, and `.cardRemoved`
    /// when the card left: in those two cases the caller cannot tell whether it was written.
    /// `sequence` and `challenge` must be the object's own `DF43` and `DF48`.
    public func writeUsage(_ object: [UInt8], cardNumber: String, sequence: UInt32, challenge: [UInt8],
                           cardPublicKey: [UInt8]) throws -> [UInt8] {
        try requireMedical(.updateBinary)
        guard object.count <= UsageRecord.maxObjectLength else {
            throw CardError.misuse("usage record of \(object.count) bytes, at most \(UsageRecord.maxObjectLength)")
        }
        let record: UsageRecord
        do { record = try UsageRecord(fileBytes: object) } catch {
            throw CardError.misuse("the record to write is not a §5.1 usage record: \(error)")
        }
        guard record.object == object, let body = record.body else { throw CardError.misuse("the record to write is not one non-empty 72 object") }
        guard record.sequence == sequence, body.challenge == challenge else {
            throw CardError.misuse("sequence/challenge given (\(sequence), \(challenge.hexString)) are not the record's DF43/DF48 (\(record.sequence), \(body.challenge.hexString))")
        }
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: cardPublicKey) else {
            throw CardError.misuse("card public key is not a 32-byte Ed25519 key")
        }
        let r = try send(CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0x00, data: object, le: 0x00))
        guard r.status.isSuccess else { throw CardError.writeRefused(.updateBinary, r.status) }
        guard !r.data.isEmpty else { throw CardError.writeUnacknowledged("90 00 without an acknowledgement") }
        guard r.data.count == 64 else { throw CardError.writeUnacknowledged("acknowledgement of \(r.data.count) bytes, expected 64") }
        let message = CardSession.ackMessage(cardNumber: cardNumber, sequence: sequence, challenge: challenge)
        guard key.isValidSignature(r.data, for: message) else {
            throw CardError.writeUnacknowledged("acknowledgement does not verify with the card key over sequence \(sequence) and the challenge")
        }
        return r.data
    }

    /// `writeUsage` with the sequence and challenge taken from the object itself.
    public func writeUsage(_ object: [UInt8], cardNumber: String, cardPublicKey: [UInt8]) throws -> [UInt8] {
        guard let record = try? UsageRecord(fileBytes: object), let body = record.body else {
            throw CardError.misuse("the record to write is not a non-empty §5.1 usage record")
        }
        return try writeUsage(object, cardNumber: cardNumber, sequence: record.sequence, challenge: body.challenge, cardPublicKey: cardPublicKey)
    }
}
