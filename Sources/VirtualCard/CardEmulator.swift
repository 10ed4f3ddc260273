import BenefitCard
import Crypto
import Foundation
import SmartCard

/// Ways to make the emulated card misbehave, for tests and training.
public struct Misbehaviour: Sendable, Equatable {
    /// How a `90 00` answer to UPDATE BINARY can come without a valid acknowledgement (§5.4).
    public enum AckFault: String, Sendable, Equatable, CaseIterable {
        /// `90 00` and no data.
        case missing
        /// `90 00` with 64 bytes that are not the card's signature over the ack message.
        case invalid
    }

    /// Answer every command that returns data with `61 XX` (T=0 style), handing the data
    /// out in GET RESPONSE chunks of at most this many bytes.
    public var getResponseChunk: Int?
    /// Answer `6C XX` to a READ BINARY or INTERNAL AUTHENTICATE whose Le is not the exact length.
    public var wrongLe = false
    /// One byte of the holder name changed (the issuer signature no longer verifies).
    public var tamperHolder = false
    /// INTERNAL AUTHENTICATE and the write acknowledgement are signed with another key than
    /// the one in `DF29` (a clone).
    public var wrongCardKey = false
    /// The next EF.USAGE write: the card leaves the reader before applying it.
    public var pullBeforeWrite = false
    /// The next EF.USAGE write: the card applies it, then leaves before answering.
    public var pullAfterWrite = false
    /// Every EF.USAGE write is refused with `65 81` (memory failure), nothing written.
    public var refuseWrites = false
    /// PSO VERIFY CERTIFICATE answers this status word (e.g. `69 82`) and holds no certificate.
    public var refuseCertificate: StatusWord?
    /// GET CHALLENGE answers this status word (e.g. `69 85`) and draws no challenge.
    public var refuseChallenge: StatusWord?
    /// UPDATE BINARY answers this status word and writes nothing (the challenge is used up).
    public var forceWriteStatus: StatusWord?
    /// A write that passes every check answers `90 00` without a valid acknowledgement.
    public var ackFault: AckFault?
    /// With `ackFault`: whether the card still applies the write (a genuine card whose answer
    /// was garbled) or not (a fake card that pretends to have written).
    public var ackFaultApplies = true
    /// A relay: READ BINARY of EF.USAGE (SFI 3) returns these bytes (an older record) while
    /// INTERNAL AUTHENTICATE signs the digest of the record the card really holds.
    public var staleUsage: [UInt8]?

    /// A set of misbehaviours; the default is a card that behaves.
    public init(getResponseChunk: Int? = nil, wrongLe: Bool = false, tamperHolder: Bool = false, wrongCardKey: Bool = false,
                pullBeforeWrite: Bool = false, pullAfterWrite: Bool = false, refuseWrites: Bool = false,
                refuseCertificate: StatusWord? = nil, refuseChallenge: StatusWord? = nil, forceWriteStatus: StatusWord? = nil,
                ackFault: AckFault? = nil, ackFaultApplies: Bool = true, staleUsage: [UInt8]? = nil) {
        self.getResponseChunk = getResponseChunk; self.wrongLe = wrongLe; self.tamperHolder = tamperHolder
        self.wrongCardKey = wrongCardKey; self.pullBeforeWrite = pullBeforeWrite
        self.pullAfterWrite = pullAfterWrite; self.refuseWrites = refuseWrites
        self.refuseCertificate = refuseCertificate; self.refuseChallenge = refuseChallenge
        self.forceWriteStatus = forceWriteStatus; self.ackFault = ackFault; self.ackFaultApplies = ackFaultApplies
        self.staleUsage = staleUsage
    }
}

extension Misbehaviour {
    /// A status word from 4 hex digits (`6982`, `69 85`); nil otherwise.
    public static func statusWord(hex: String) -> StatusWord? {
        guard let b = [UInt8](hex: hex), b.count == 2 else { return nil }
        return StatusWord(b[0], b[1])
    }
    /// Bytes from hex (spaces allowed); nil otherwise.
    public static func bytes(hex: String) -> [UInt8]? { [UInt8](hex: hex) }
}

/// What the emulated card does with one command.
public enum EmulatorReply: Equatable, Sendable {
    /// The response APDU's bytes, data then status word.
    case response([UInt8])
    /// The card leaves the reader without answering.
    case pulled
}

/// A card that follows card spec v2 exactly, as a real applet: SELECT, READ BINARY by SFI,
/// INTERNAL AUTHENTICATE over the digest of the EF.USAGE it holds (§4), PSO VERIFY
/// CERTIFICATE, GET CHALLENGE, UPDATE BINARY of EF.USAGE with every check of §5.3 in
/// table order, atomic replace and the acknowledgement of §5.4, GET RESPONSE.
/// Thread-safe: a transport thread serves it while a test reads its state.
///
/// `@unchecked Sendable`, and why that is sound: every `var` is private (or `private(set)`)
/// and is read or written only with `lock` held: the public entry points (`process`,
/// `transmit…`, `file`, `usageObject`, `setMisbehaviour`, `currentMisbehaviour`,
/// `setFixedChallenge`, `reset`, `commandCount`) take it, and the command handlers are
/// called only from `process` inside it. The keys are `let`s of `Sendable` types.
public final class CardEmulator: @unchecked Sendable {
    /// The card number (16 digits).
    public let cardNumber: String
    /// Medical or legal aid, from the description's AID.
    public let type: CardType
    /// EF.USAGE's size: a written object shorter than it is followed by `00` padding (§5.3).
    public static let usageFileSize = 255
    private let lock = NSLock()
    private var files: [UInt8: [UInt8]]
    private let cardKey: Curve25519.Signing.PrivateKey
    /// The key a clone signs with (`wrongCardKey`): fixed per emulator, never `DF29`'s.
    private let cloneKey = Curve25519.Signing.PrivateKey()
    private let caKeys: [String: Curve25519.Signing.PublicKey]
    private var misbehaviour: Misbehaviour
    private var selected: CardType?
    private var pending: [UInt8] = []
    /// Session state of §5.2: the verified certificate and the last challenge.
    private var heldCertificate: DeviceCertificate?
    private var heldChallenge: [UInt8]?
    private var fixedChallenge: [UInt8]?
    /// Count of commands answered, for tests.
    public var commandCount: Int { lock.withLock { commands } }
    private var commands = 0

    /// The ATR every emulated card answers with: T=1, historical bytes `BKCARD02`.
    public static let atr: [UInt8] = {
        // T=1 ATR in the PC/SC contactless form: 3B 88 80 01 <8 historical bytes> TCK.
        var a: [UInt8] = [0x3B, 0x88, 0x80, 0x01] + Array("BKCARD02".utf8)
        a.append(a.dropFirst().reduce(0, ^))
        return a
    }()

    /// A card from its description, misbehaving as `misbehaviour` says (`tamperHolder` is applied here, once).
    /// - Throws: `CardDescriptionError` for a field that is not hex, an unknown AID, a bad seed or CA key.
    public init(description d: CardDescription, misbehaviour: Misbehaviour = Misbehaviour()) throws {
        guard let aid = [UInt8](hex: d.aid) else { throw CardDescriptionError.badHex(field: "aid") }
        guard let t = CardType.allCases.first(where: { $0.aid == aid }) else { throw CardDescriptionError.unknownAID(d.aid) }
        guard let seed = Data(base64Encoded: d.cardPrivateSeed), seed.count == 32,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else { throw CardDescriptionError.badSeed }
        guard let holder = [UInt8](hex: d.files.holder) else { throw CardDescriptionError.badHex(field: "files.holder") }
        guard let signature = [UInt8](hex: d.files.signature) else { throw CardDescriptionError.badHex(field: "files.signature") }
        var files: [UInt8: [UInt8]] = [1: holder, 2: signature]
        if let u = d.files.usage {
            guard let usage = [UInt8](hex: u) else { throw CardDescriptionError.badHex(field: "files.usage") }
            files[3] = CardEmulator.padded(usage)
        }
        var ca: [String: Curve25519.Signing.PublicKey] = [:]
        for k in d.caKeys {
            guard let raw = Data(base64Encoded: k.publicKey), raw.count == 32,
                  let pk = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { throw CardDescriptionError.badCAKey(k.keyID) }
            ca[k.keyID] = pk
        }
        cardNumber = d.cardNumber
        type = t
        cardKey = key
        caKeys = ca
        self.files = files
        self.misbehaviour = misbehaviour
        if misbehaviour.tamperHolder { self.files[1] = CardEmulator.tamperName(holder) }
    }

    static func padded(_ object: [UInt8]) -> [UInt8] {
        object.count >= usageFileSize ? object : object + [UInt8](repeating: 0, count: usageFileSize - object.count)
    }

    /// Flips the low bit of the last byte of `DF22`: still valid UTF-8, another name.
    static func tamperName(_ holder: [UInt8]) -> [UInt8] {
        guard let (tlv, _) = try? TLV.parseSingle(holder), let children = try? tlv.children() else { return holder }
        let changed = children.map { c -> TLV in
            guard c.tag == 0xDF22, !c.value.isEmpty else { return c }
            var v = c.value
            v[v.count - 1] ^= 0x01
            return TLV(tag: c.tag, value: v)
        }
        return TLV.constructed(0x70, changed).encoded
    }

    /// A file's contents now (1 EF.HOLDER, 2 EF.SIGNATURE, 3 EF.USAGE with its padding).
    public func file(_ sfi: UInt8) -> [UInt8]? { lock.withLock { files[sfi] } }

    /// The `72` object EF.USAGE holds, padding excluded (nil on a legal-aid card).
    public var usageObject: [UInt8]? { lock.withLock { heldUsageObject() } }

    private func heldUsageObject() -> [UInt8]? {
        guard let f = files[3] else { return nil }
        return (try? TLV.parseSingle(f))?.1 ?? f
    }

    /// Replaces the misbehaviour from the next command on.
    public func setMisbehaviour(_ m: Misbehaviour) { lock.withLock { misbehaviour = m } }
    /// The misbehaviour now (a pull switch that fired is off again).
    public var currentMisbehaviour: Misbehaviour { lock.withLock { misbehaviour } }

    /// GET CHALLENGE answers these bytes instead of 16 random ones (for the vectors); nil: random.
    /// Any other length than 16 makes a card that breaks §5.2, for tests of the terminal.
    public func setFixedChallenge(_ challenge: [UInt8]?) { lock.withLock { fixedChallenge = challenge } }

    /// Power on / reset: the application is deselected, the session's certificate and challenge dropped.
    public func reset() { lock.withLock { selected = nil; pending = []; heldCertificate = nil; heldChallenge = nil } }

    /// Handles one command APDU.
    public func process(_ bytes: [UInt8]) -> EmulatorReply {
        lock.withLock {
            commands += 1
            return handle(bytes)
        }
    }

    private func sw(_ s: StatusWord) -> EmulatorReply { .response([s.sw1, s.sw2]) }

    private func handle(_ bytes: [UInt8]) -> EmulatorReply {
        guard let c = CommandAPDU(bytes: bytes) else { return sw(.wrongLength) }
        guard c.cla == 0x00 else { return sw(.claNotSupported) }
        if c.ins != 0xC0 { pending = [] }
        switch c.ins {
        case 0xA4: return select(c)
        case 0xB0: return readBinary(c)
        case 0x88: return internalAuthenticate(c)
        case 0x2A: return verifyCertificate(c)
        case 0x84: return getChallenge(c)
        case 0xD6: return updateBinary(c)
        case 0xC0: return getResponse(c)
        default: return sw(.insNotSupported)
        }
    }

    private func answer(_ data: [UInt8], le: UInt8?) -> EmulatorReply {
        if let chunk = misbehaviour.getResponseChunk, !data.isEmpty {
            pending = data
            return sw(StatusWord(0x61, UInt8(min(chunk, data.count, 255) & 0xFF)))
        }
        return .response(data + [0x90, 0x00])
    }

    private func select(_ c: CommandAPDU) -> EmulatorReply {
        guard c.p1 == 0x04, c.p2 == 0x00 else { return sw(StatusWord(0x6A86)) }
        heldCertificate = nil
        heldChallenge = nil
        guard c.data == type.aid else { selected = nil; return sw(.fileNotFound) }
        selected = type
        let fci = TLV.constructed(0x6F, [
            TLV(tag: 0x84, value: type.aid),
            TLV.constructed(0xA5, [TLV(tag: 0x9F08, value: [0x02, 0x00]), TLV(tag: 0xDF01, value: [type.typeByte])]),
        ]).encoded
        return answer(fci, le: c.le)
    }

    private func lengthCheck(_ data: [UInt8], le: UInt8?) -> EmulatorReply? {
        guard misbehaviour.wrongLe, data.count <= 255 else { return nil }
        if le != UInt8(data.count) { return sw(StatusWord(0x6C, UInt8(data.count))) }
        return nil
    }

    private func readBinary(_ c: CommandAPDU) -> EmulatorReply {
        guard selected != nil else { return sw(.conditionsNotSatisfied) }
        guard c.p1 & 0x80 != 0 else { return sw(StatusWord(0x6981)) }
        let sfi = c.p1 & 0x1F
        guard var file = files[sfi] else { return sw(.fileNotFound) }
        if sfi == 3, let stale = misbehaviour.staleUsage { file = stale }
        let offset = Int(c.p2)
        guard offset <= file.count else { return sw(StatusWord(0x6B00)) }
        var data = Array(file[offset...])
        if let bad = lengthCheck(data, le: c.le) { return bad }
        if let le = c.le, le != 0 { data = Array(data.prefix(Int(le))) }
        return answer(data, le: c.le)
    }

    private var signingKey: Curve25519.Signing.PrivateKey { misbehaviour.wrongCardKey ? cloneKey : cardKey }

    private func internalAuthenticate(_ c: CommandAPDU) -> EmulatorReply {
        guard selected != nil else { return sw(.conditionsNotSatisfied) }
        guard c.p1 == 0, c.p2 == 0 else { return sw(StatusWord(0x6A86)) }
        guard c.data.count == 32 else { return sw(.wrongLength) }
        let digest = Array(SHA256.hash(data: heldUsageObject() ?? UsageRecord.emptyObject))
        let message = CardSession.authMessage(cardNumber: cardNumber, challenge: c.data, usageDigest: digest)
        guard let signature = try? signingKey.signature(for: message) else { return sw(StatusWord(0x6F00)) }
        let data = Array(signature)
        if let bad = lengthCheck(data, le: c.le) { return bad }
        return answer(data, le: c.le)
    }

    /// The stored `DF45` (nil for `72 00`): the card's idea of today (§5.2).
    private func storedRecord() -> UsageRecord? {
        guard let f = files[3] else { return nil }
        return try? UsageRecord(fileBytes: f)
    }

    /// PSO VERIFY CERTIFICATE (§5.2 step 1). Any failure drops the held certificate.
    private func verifyCertificate(_ c: CommandAPDU) -> EmulatorReply {
        guard selected != nil else { return sw(.conditionsNotSatisfied) }
        guard c.p1 == 0x00, c.p2 == 0xBE else { return sw(StatusWord(0x6A86)) }
        heldCertificate = nil
        if let forced = misbehaviour.refuseCertificate { return sw(forced) }
        let refused = StatusWord(0x6982)
        guard let cert = try? DeviceCertificate(bytes: c.data), cert.verify(caKeys: caKeys) else { return sw(refused) }
        if let written = storedRecord()?.body?.writtenAt {
            guard let today = UsageRecord.chinaStandardDate(ofWrittenAt: written), cert.validThrough >= today else { return sw(refused) }
        }
        heldCertificate = cert
        return sw(.success)
    }

    /// GET CHALLENGE (§5.2 step 2): 16 fresh bytes, kept for the next UPDATE BINARY.
    private func getChallenge(_ c: CommandAPDU) -> EmulatorReply {
        guard selected != nil else { return sw(.conditionsNotSatisfied) }
        guard c.p1 == 0x00, c.p2 == 0x00 else { return sw(StatusWord(0x6A86)) }
        guard c.data.isEmpty, let le = c.le else { return sw(.wrongLength) }
        guard le == 0x10 || le == 0x00 else { return sw(StatusWord(0x6C, 0x10)) }
        if let forced = misbehaviour.refuseChallenge { heldChallenge = nil; return sw(forced) }
        var g = SystemRandomNumberGenerator()
        let challenge = fixedChallenge ?? (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
        heldChallenge = challenge
        return answer(challenge, le: c.le)
    }

    /// The first failing row of the table of §5.3, or nil when the write may be applied.
    private func refusal(_ data: [UInt8], challenge: [UInt8]?) -> StatusWord? {
        // Row 1, well formed: exactly one 72 object, the objects of §5.1 in order with their
        // lengths and formats, canonical lengths, nothing after it.
        guard let (object, encoded) = try? TLV.parse(data), encoded == data.count,
              let new = try? UsageRecord(object: object), new.object == data, let body = new.body,
              CardEmulator.canonicalValue(new.sequence, body) == body.signedBytes else { return .wrongData }
        // Row 2: certificate, challenge, DF44, DF48, DF46.
        guard let cert = heldCertificate, let challenge, body.terminalID == cert.deviceID, body.challenge == challenge,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: cert.devicePublicKey),
              key.isValidSignature(body.signature, for: UsageRecord.signedMessage(cardNumber: cardNumber, signedBytes: body.signedBytes))
        else { return StatusWord(0x6982) }
        // Row 3: sequence + 1.
        let stored = storedRecord() ?? .empty
        guard stored.sequence < UInt32.max, new.sequence == stored.sequence + 1 else { return .conditionsNotSatisfied }
        // Row 4: DF45's China Standard Time date within the certificate, DF41 its year.
        guard let day = UsageRecord.chinaStandardDate(ofWrittenAt: body.writtenAt), cert.validFrom <= day, day <= cert.validThrough,
              body.period == String(format: "%04d", day.year) else { return StatusWord(0x6982) }
        // Row 5: never back in time, never a lower amount in the same period.
        if let old = stored.body {
            guard body.writtenAt >= old.writtenAt, body.period >= old.period else { return .conditionsNotSatisfied }
            if body.period == old.period {
                for e in old.entries {
                    guard let now = body.entries.first(where: { $0.program == e.program }), now.usedFen >= e.usedFen else {
                        return .conditionsNotSatisfied
                    }
                }
            }
        }
        return nil
    }

    /// The `72` value before `DF46` with every length in its shortest form: a record whose
    /// bytes differ (e.g. `81 04` for a 4-byte length) is not well formed.
    static func canonicalValue(_ sequence: UInt32, _ body: UsageRecord.Body) -> [UInt8] {
        var out: [UInt8] = []
        out += TLV(tag: 0xDF41, value: Array(body.period.utf8)).encoded
        out += TLV(tag: 0xDF43, value: [UInt8(sequence >> 24), UInt8(sequence >> 16 & 0xFF), UInt8(sequence >> 8 & 0xFF), UInt8(sequence & 0xFF)]).encoded
        out += TLV(tag: 0xDF44, value: Array(body.terminalID.utf8)).encoded
        out += TLV(tag: 0xDF45, value: Array(body.writtenAt.utf8)).encoded
        for e in body.entries {
            let fen = UInt32(clamping: e.usedFen)
            out += TLV.constructed(0xE1, [
                TLV(tag: 0xDF47, value: Array(e.program.utf8)),
                TLV(tag: 0xDF42, value: [UInt8(fen >> 24), UInt8(fen >> 16 & 0xFF), UInt8(fen >> 8 & 0xFF), UInt8(fen & 0xFF)]),
            ]).encoded
        }
        out += TLV(tag: 0xDF48, value: body.challenge).encoded
        return out
    }

    /// UPDATE BINARY of EF.USAGE with Le = 00 (§5.2 step 3, §5.3, §5.4).
    private func updateBinary(_ c: CommandAPDU) -> EmulatorReply {
        guard selected != nil else { return sw(.conditionsNotSatisfied) }
        guard selected == .medical, files[3] != nil else { return sw(.fileNotFound) }
        guard c.p1 == 0x83, c.p2 == 0x00 else { return sw(StatusWord(0x6981)) }
        // The challenge is used up by this UPDATE BINARY, whatever comes of it.
        let challenge = heldChallenge
        heldChallenge = nil
        guard c.le == 0x00, !c.data.isEmpty else { return sw(.wrongLength) }
        if misbehaviour.pullBeforeWrite {
            misbehaviour.pullBeforeWrite = false
            return .pulled
        }
        if misbehaviour.refuseWrites { return sw(.memoryFailure) }
        if let forced = misbehaviour.forceWriteStatus { return sw(forced) }
        if let refused = refusal(c.data, challenge: challenge) { return sw(refused) }
        guard let new = try? UsageRecord(fileBytes: c.data), let body = new.body else { return sw(.wrongData) }
        let ack = CardSession.ackMessage(cardNumber: cardNumber, sequence: new.sequence, challenge: body.challenge)
        if let fault = misbehaviour.ackFault {
            if misbehaviour.ackFaultApplies { files[3] = CardEmulator.padded(c.data) }
            switch fault {
            case .missing: return sw(.success)
            case .invalid:
                var garbage = (try? cardKey.signature(for: ack)).map(Array.init) ?? [UInt8](repeating: 0, count: 64)
                garbage[0] ^= 0x80
                return .response(garbage + [0x90, 0x00])
            }
        }
        files[3] = CardEmulator.padded(c.data)   // atomic: the whole object or nothing
        if misbehaviour.pullAfterWrite {
            misbehaviour.pullAfterWrite = false
            return .pulled
        }
        guard let signature = try? signingKey.signature(for: ack) else { return sw(StatusWord(0x6F00)) }
        return answer(Array(signature), le: c.le)
    }

    private func getResponse(_ c: CommandAPDU) -> EmulatorReply {
        guard !pending.isEmpty else { return sw(.conditionsNotSatisfied) }
        let want = c.le.map { $0 == 0 ? 256 : Int($0) } ?? 256
        let chunk = Array(pending.prefix(want))
        pending.removeFirst(chunk.count)
        if pending.isEmpty { return .response(chunk + [0x90, 0x00]) }
        let next = min(misbehaviour.getResponseChunk ?? 255, pending.count, 255)
        return .response(chunk + [0x61, UInt8(next)])
    }
}

/// The emulator as an in-process channel (no pcscd), for fast unit tests. A pull
/// throws `PCSCError.removedCard` as a real reader would, and the card stays out.
public final class EmulatedChannel: CardChannel, RawCardChannel {
    /// The card in the channel.
    public let emulator: CardEmulator
    /// Whether the card has been pulled; every later command throws `PCSCError.removedCard`.
    public private(set) var removed = false
    /// A channel to `emulator`, reset as a card freshly put on a reader.
    public init(_ emulator: CardEmulator) { self.emulator = emulator; emulator.reset() }

    /// Hands the bytes to the emulator and returns its answer as it is.
    /// - Throws: `PCSCError.removedCard` when the card is pulled, now or before.
    public func transmitRaw(_ command: [UInt8]) throws -> [UInt8] {
        guard !removed else { throw PCSCError.removedCard }
        switch emulator.process(command) {
        case .response(let r): return r
        case .pulled: removed = true; throw PCSCError.removedCard
        }
    }

    /// Sends one command with the transport rules of card spec §1 applied.
    public func transmit(_ command: CommandAPDU) throws -> ResponseAPDU {
        try TransportRules.exchange(command, over: self)
    }
}
