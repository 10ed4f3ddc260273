import BenefitCard
import Crypto
import Foundation
import SmartCard

/// Ways to make the emulated card misbehave, for tests and training.
public struct Misbehaviour: Sendable, Equatable {
    /// Answer every command that returns data with `61 XX` (T=0 style), handing the data
    /// out in GET RESPONSE chunks of at most this many bytes.
    public var getResponseChunk: Int?
    /// Answer `6C XX` to a READ BINARY or INTERNAL AUTHENTICATE whose Le is not the exact length.
    public var wrongLe = false
    /// One byte of the holder name changed (the issuer signature no longer verifies).
    public var tamperHolder = false
    /// INTERNAL AUTHENTICATE signs with another key than the one in `DF29` (a clone).
    public var wrongCardKey = false
    /// The next EF.USAGE write: the card leaves the reader before applying it.
    public var pullBeforeWrite = false
    /// The next EF.USAGE write: the card applies it, then leaves before answering.
    public var pullAfterWrite = false
    /// Every EF.USAGE write is refused with `65 81` (memory failure).
    public var refuseWrites = false

    public init(getResponseChunk: Int? = nil, wrongLe: Bool = false, tamperHolder: Bool = false, wrongCardKey: Bool = false,
                pullBeforeWrite: Bool = false, pullAfterWrite: Bool = false, refuseWrites: Bool = false) {
        self.getResponseChunk = getResponseChunk; self.wrongLe = wrongLe; self.tamperHolder = tamperHolder
        self.wrongCardKey = wrongCardKey; self.pullBeforeWrite = pullBeforeWrite
        self.pullAfterWrite = pullAfterWrite; self.refuseWrites = refuseWrites
    }
}

/// What the emulated card does with one command.
public enum EmulatorReply: Equatable, Sendable {
    case response([UInt8])
    /// The card leaves the reader without answering.
    case pulled
}

/// A card that follows card spec v1 exactly: SELECT, READ BINARY by SFI, INTERNAL
/// AUTHENTICATE, UPDATE BINARY of EF.USAGE with the sequence rule, GET RESPONSE.
/// Thread-safe: a transport thread serves it while a test reads its state.
public final class CardEmulator: @unchecked Sendable {
    public let cardNumber: String
    public let type: CardType
    private let lock = NSLock()
    private var files: [UInt8: [UInt8]]
    private let cardKey: Curve25519.Signing.PrivateKey
    private var misbehaviour: Misbehaviour
    private var selected: CardType?
    private var pending: [UInt8] = []
    /// Count of commands answered, for tests.
    public private(set) var commandCount = 0

    public static let atr: [UInt8] = {
        // T=1 ATR in the PC/SC contactless form: 3B 88 80 01 <8 historical bytes> TCK.
        var a: [UInt8] = [0x3B, 0x88, 0x80, 0x01] + Array("BKCARD01".utf8)
        a.append(a.dropFirst().reduce(0, ^))
        return a
    }()

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
            files[3] = usage
        }
        cardNumber = d.cardNumber
        type = t
        cardKey = key
        self.files = files
        self.misbehaviour = misbehaviour
        if misbehaviour.tamperHolder { self.files[1] = CardEmulator.tamperName(holder) }
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

    /// A file's contents now (1 EF.HOLDER, 2 EF.SIGNATURE, 3 EF.USAGE).
    public func file(_ sfi: UInt8) -> [UInt8]? { lock.withLock { files[sfi] } }

    public func setMisbehaviour(_ m: Misbehaviour) { lock.withLock { misbehaviour = m } }

    /// Power on / reset: the application is deselected.
    public func reset() { lock.withLock { selected = nil; pending = [] } }

    /// Handles one command APDU.
    public func process(_ bytes: [UInt8]) -> EmulatorReply {
        lock.withLock {
            commandCount += 1
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
        guard c.data == type.aid else { selected = nil; return sw(.fileNotFound) }
        selected = type
        let fci = TLV.constructed(0x6F, [
            TLV(tag: 0x84, value: type.aid),
            TLV.constructed(0xA5, [TLV(tag: 0x9F08, value: [0x01, 0x00]), TLV(tag: 0xDF01, value: [type.typeByte])]),
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
        guard let file = files[c.p1 & 0x1F] else { return sw(.fileNotFound) }
        let offset = Int(c.p2)
        guard offset <= file.count else { return sw(StatusWord(0x6B00)) }
        var data = Array(file[offset...])
        if let bad = lengthCheck(data, le: c.le) { return bad }
        if let le = c.le, le != 0 { data = Array(data.prefix(Int(le))) }
        return answer(data, le: c.le)
    }

    private func internalAuthenticate(_ c: CommandAPDU) -> EmulatorReply {
        guard selected != nil else { return sw(.conditionsNotSatisfied) }
        guard c.p1 == 0, c.p2 == 0 else { return sw(StatusWord(0x6A86)) }
        guard c.data.count == 32 else { return sw(.wrongLength) }
        let message = Array("CARD-AUTH-V1".utf8) + Array(cardNumber.utf8) + c.data
        let key = misbehaviour.wrongCardKey ? Curve25519.Signing.PrivateKey() : cardKey
        guard let signature = try? key.signature(for: message) else { return sw(StatusWord(0x6F00)) }
        let data = Array(signature)
        if let bad = lengthCheck(data, le: c.le) { return bad }
        return answer(data, le: c.le)
    }

    private func updateBinary(_ c: CommandAPDU) -> EmulatorReply {
        guard selected == .medical, let current = files[3] else { return sw(.conditionsNotSatisfied) }
        guard c.p1 == 0x83, c.p2 == 0x00 else { return sw(StatusWord(0x6981)) }
        if misbehaviour.pullBeforeWrite {
            misbehaviour.pullBeforeWrite = false
            return .pulled
        }
        if misbehaviour.refuseWrites { return sw(.memoryFailure) }
        // Well formed: exactly one 72 object that parses as a non-empty usage record.
        guard let (object, encoded) = try? TLV.parseSingle(c.data), encoded.count == c.data.count,
              let record = try? UsageRecord(object: object), !record.isEmpty else { return sw(.wrongData) }
        let stored = (try? UsageRecord(fileBytes: current))?.sequence ?? 0
        guard stored < UInt32.max, record.sequence == stored + 1 else { return sw(.conditionsNotSatisfied) }
        files[3] = c.data   // atomic: the whole object or nothing
        if misbehaviour.pullAfterWrite {
            misbehaviour.pullAfterWrite = false
            return .pulled
        }
        return sw(.success)
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
    public let emulator: CardEmulator
    public private(set) var removed = false
    public init(_ emulator: CardEmulator) { self.emulator = emulator; emulator.reset() }

    public func transmitRaw(_ command: [UInt8]) throws -> [UInt8] {
        guard !removed else { throw PCSCError.removedCard }
        switch emulator.process(command) {
        case .response(let r): return r
        case .pulled: removed = true; throw PCSCError.removedCard
        }
    }

    public func transmit(_ command: CommandAPDU) throws -> ResponseAPDU {
        try TransportRules.exchange(command, over: self)
    }
}
