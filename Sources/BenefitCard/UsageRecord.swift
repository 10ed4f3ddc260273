import Crypto
import Foundation
import KioskProtocol
import SmartCard

/// EF.USAGE, template `72` (card spec v2 §5): the card's own annual usage record.
public struct UsageRecord: Sendable, Equatable {
    /// One program's usage in the record: an `E1` object (`DF47`, `DF42`).
    public struct Entry: Sendable, Equatable, Codable {
        /// `DF47`: the program code, 1–16 characters of `A–Z 0–9 -`.
        public var program: String
        /// `DF42`: what the program has used in the record's period, in fen (4 bytes on the card).
        public var usedFen: Int64
        /// An entry of a program code and its used amount in fen.
        public init(program: String, usedFen: Int64) { self.program = program; self.usedFen = usedFen }
    }

    /// Present unless the record is the empty `72 00` of a new card.
    public struct Body: Sendable, Equatable {
        /// `DF41`: the period, the year as 4 digits.
        public var period: String
        /// `DF44`: the identifier of the device that wrote the record (its certificate's `5F20`).
        public var terminalID: String
        /// `DF45`: when it was written, `YYYY-MM-DDTHH:MM:SSZ` in UTC.
        public var writtenAt: String
        /// The `E1` entries, 1 to 3, in the order written.
        public var entries: [Entry]
        /// `DF48`: the card's GET CHALLENGE answer that preceded the write (16 bytes).
        public var challenge: [UInt8]
        /// `DF46`: the writing device's 64-byte Ed25519 signature (§5.1).
        public var signature: [UInt8]
        /// Every byte of the `72` value before `DF46`: what `DF46` signs (after "USAGE-V2" ‖ card number).
        public var signedBytes: [UInt8]

        /// A body from its fields, as parsed; nothing is checked.
        public init(period: String, terminalID: String, writtenAt: String, entries: [Entry], challenge: [UInt8],
                    signature: [UInt8], signedBytes: [UInt8]) {
            self.period = period; self.terminalID = terminalID; self.writtenAt = writtenAt; self.entries = entries
            self.challenge = challenge; self.signature = signature; self.signedBytes = signedBytes
        }
    }

    /// `DF43`: the write sequence, 0 for the empty record; every write adds 1 (§5.3).
    public var sequence: UInt32
    /// The fields after the sequence; nil for the empty record `72 00`.
    public var body: Body?
    /// The exact `72` object (tag, length, value; padding excluded) as read or built;
    /// `72 00` for the empty record. INTERNAL AUTHENTICATE signs its SHA-256 (§4).
    public private(set) var object: [UInt8]

    /// The empty record of a new card: sequence 0, no body.
    public static let empty = UsageRecord(sequence: 0, body: nil)
    /// The bytes of the empty record, `72 00`.
    public static let emptyObject: [UInt8] = [0x72, 0x00]
    /// Whether this is the empty record.
    public var isEmpty: Bool { body == nil }

    /// SHA-256 of `object`.
    public var digest: [UInt8] { Array(SHA256.hash(data: object)) }

    /// `DF45` as a date (UTC), nil for the empty record.
    public var writtenAtDate: Date? { body.flatMap { UsageRecord.parseTimestamp($0.writtenAt) } }

    /// The used amount of `program` in `period`, 0 when the record is of another period.
    public func used(program: String, period: String) -> Int64 {
        guard let body, body.period == period else { return 0 }
        return body.entries.first { $0.program == program }?.usedFen ?? 0
    }

    /// A record from its parts; `object` is re-encoded from them.
    public init(sequence: UInt32, body: Body?) {
        self.sequence = sequence
        self.body = body
        if let body {
            object = TLV(tag: 0x72, value: body.signedBytes + TLV(tag: 0xDF46, value: body.signature).encoded).encoded
        } else {
            object = UsageRecord.emptyObject
        }
    }

    /// The tags of §5.1, in this order: DF41, DF43, DF44, DF45, E1 ×1…3, DF48, DF46.
    /// Parses and checks the form of a `72` object strictly (not its signature).
    public init(object: TLV) throws {
        let file = "EF.USAGE"
        guard object.tag == 0x72 else { throw CardFormatError.wrongTemplate(file: file, expected: 0x72, found: object.tag) }
        if object.value.isEmpty { self = .empty; return }
        var offset = 0
        var children: [(tlv: TLV, offset: Int)] = []
        do {
            while offset < object.value.count {
                let (tlv, used) = try TLV.parse(object.value, from: offset)
                children.append((tlv, offset))
                offset += used
            }
        } catch let e as TLVError { throw CardFormatError.malformedTLV(file: file, e) }

        let tags = children.map(\.tlv.tag)
        let n = tags.count - 6
        guard n >= 1, n <= 3, tags == [0xDF41, 0xDF43, 0xDF44, 0xDF45] + Array(repeating: 0xE1, count: n) + [0xDF48, 0xDF46] else {
            let found = tags.map { String($0, radix: 16, uppercase: true) }.joined(separator: " ")
            throw CardFormatError.invalidField(tag: 0x72, name: "usage record",
                                               why: "objects \(found) are not DF41 DF43 DF44 DF45 E1(1–3) DF48 DF46 in this order")
        }
        let v = children.map(\.tlv.value)
        guard v[0].count == 4, v[0].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw CardFormatError.invalidField(tag: 0xDF41, name: "period", why: "not 4 digits")
        }
        guard v[1].count == 4 else { throw CardFormatError.invalidField(tag: 0xDF43, name: "sequence", why: "not 4 bytes") }
        guard (1...32).contains(v[2].count), v[2].allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw CardFormatError.invalidField(tag: 0xDF44, name: "terminal identifier", why: "not 1–32 ASCII bytes")
        }
        let written = String(decoding: v[3], as: UTF8.self)
        guard v[3].count == 20, UsageRecord.parseTimestamp(written) != nil else {
            throw CardFormatError.invalidField(tag: 0xDF45, name: "written at", why: "not YYYY-MM-DDTHH:MM:SSZ")
        }
        var entries: [Entry] = []
        for c in children[4..<4 + n] {
            let inner: [TLV]
            do { inner = try c.tlv.children() } catch let e as TLVError { throw CardFormatError.malformedTLV(file: file, e) }
            guard inner.map(\.tag) == [0xDF47, 0xDF42] else {
                throw CardFormatError.invalidField(tag: 0xE1, name: "program entry", why: "not DF47 then DF42")
            }
            let code = inner[0].value, used = inner[1].value
            guard UsageRecord.isProgramCode(code) else {
                throw CardFormatError.invalidField(tag: 0xDF47, name: "program code", why: "not 1–16 bytes of A–Z 0–9 -")
            }
            guard used.count == 4 else { throw CardFormatError.invalidField(tag: 0xDF42, name: "used amount", why: "not 4 bytes") }
            let program = String(decoding: code, as: UTF8.self)
            guard !entries.contains(where: { $0.program == program }) else { throw CardFormatError.duplicateField(tag: 0xDF47) }
            entries.append(Entry(program: program, usedFen: Int64(used.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })))
        }
        guard v[4 + n].count == 16 else {
            throw CardFormatError.invalidField(tag: 0xDF48, name: "card challenge", why: "length \(v[4 + n].count), expected 16")
        }
        guard v[5 + n].count == 64 else {
            throw CardFormatError.invalidField(tag: 0xDF46, name: "terminal signature", why: "length \(v[5 + n].count), expected 64")
        }
        sequence = v[1].reduce(0) { $0 << 8 | UInt32($1) }
        body = Body(period: String(decoding: v[0], as: UTF8.self), terminalID: String(decoding: v[2], as: UTF8.self),
                    writtenAt: written, entries: entries, challenge: v[4 + n], signature: v[5 + n],
                    signedBytes: Array(object.value[0..<children[5 + n].offset]))
        self.object = object.encoded
    }

    /// Parses the raw contents of EF.USAGE (padding allowed). `object` keeps the bytes exactly as read.
    public init(fileBytes: [UInt8]) throws {
        let object: TLV, raw: [UInt8]
        do { (object, raw) = try TLV.parseSingle(fileBytes) } catch let e as TLVError {
            throw CardFormatError.malformedTLV(file: "EF.USAGE", e)
        }
        try self.init(object: object)
        self.object = raw
    }

    /// `1–16 bytes of A–Z 0–9 -` (§5.1, `DF47`).
    public static func isProgramCode<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        (1...16).contains(bytes.count) && bytes.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    /// `"USAGE-V2"` ‖ card number ‖ the `72` value bytes before `DF46` (§5.1).
    public static func signedMessage(cardNumber: String, signedBytes: [UInt8]) -> [UInt8] {
        SigningMessage.usage(cardNumber: cardNumber, signedBytes: signedBytes)
    }

    /// Builds and signs a new record: the whole `72` object to write (§5.1). Every field is
    /// checked first; a bad one throws `UsageWriteError`, never traps.
    public static func encode(cardNumber: String, period: String, sequence: UInt32, terminalID: String, writtenAt: Date,
                              entries: [Entry], challenge: [UInt8], signer: Curve25519.Signing.PrivateKey) throws -> [UInt8] {
        guard cardNumber.utf8.count == 16, cardNumber.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw UsageWriteError.invalidCardNumber(cardNumber)
        }
        guard period.utf8.count == 4, period.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw UsageWriteError.invalidPeriod(period) }
        guard (1...32).contains(terminalID.utf8.count), terminalID.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw UsageWriteError.invalidTerminalID(terminalID)
        }
        guard (1...3).contains(entries.count) else { throw UsageWriteError.entryCount(entries.count) }
        guard challenge.count == 16 else { throw UsageWriteError.invalidChallenge(length: challenge.count) }
        var seen: Set<String> = []
        for e in entries {
            guard isProgramCode(Array(e.program.utf8)) else { throw UsageWriteError.invalidProgramCode(e.program) }
            guard seen.insert(e.program).inserted else { throw UsageWriteError.duplicateProgram(e.program) }
            guard e.usedFen >= 0, e.usedFen <= Int64(UInt32.max) else { throw UsageWriteError.amountOutOfRange(program: e.program, e.usedFen) }
        }
        var body: [UInt8] = []
        body += TLV(tag: 0xDF41, value: Array(period.utf8)).encoded
        body += TLV(tag: 0xDF43, value: sequence.bigEndianBytes).encoded
        body += TLV(tag: 0xDF44, value: Array(terminalID.utf8)).encoded
        body += TLV(tag: 0xDF45, value: Array(UsageRecord.timestamp(writtenAt).utf8)).encoded
        for e in entries {
            body += TLV.constructed(0xE1, [
                TLV(tag: 0xDF47, value: Array(e.program.utf8)),
                TLV(tag: 0xDF42, value: UInt32(e.usedFen).bigEndianBytes),
            ]).encoded
        }
        body += TLV(tag: 0xDF48, value: challenge).encoded
        let signature = try signer.signature(for: signedMessage(cardNumber: cardNumber, signedBytes: body))
        let object = TLV(tag: 0x72, value: body + TLV(tag: 0xDF46, value: Array(signature)).encoded).encoded
        guard object.count <= maxObjectLength else { throw UsageWriteError.tooLong(object.count) }
        return object
    }

    /// The largest `72` object card spec §5.1 allows (and what one short UPDATE BINARY carries with Le).
    public static let maxObjectLength = 245

    /// The next record's sequence and entries: sequence + 1; the entries of the record's
    /// period carried over when it is `period`, with each program in `used` set to its new
    /// used amount for the period (the terminal's max(S + L, C) + deduction, card spec §5).
    public func next(period: String, setting used: [(program: String, usedFen: Int64)]) throws -> (sequence: UInt32, entries: [Entry]) {
        var entries: [Entry] = []
        if let body, body.period == period { entries = body.entries }
        for (program, fen) in used {
            guard UsageRecord.isProgramCode(Array(program.utf8)) else { throw UsageWriteError.invalidProgramCode(program) }
            guard fen >= 0, fen <= Int64(UInt32.max) else { throw UsageWriteError.amountOutOfRange(program: program, fen) }
            if let i = entries.firstIndex(where: { $0.program == program }) {
                entries[i].usedFen = fen
            } else {
                entries.append(Entry(program: program, usedFen: fen))
            }
        }
        guard entries.count <= 3 else { throw UsageWriteError.tooManyPrograms }
        guard sequence < UInt32.max else { throw UsageWriteError.sequenceExhausted }
        return (sequence + 1, entries)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` in UTC (`DF45`): the contract's one form (`Timestamp`).
    public static func timestamp(_ date: Date) -> String { Timestamp.string(date) }

    /// A `DF45` text as an instant; nil when it is not exactly `YYYY-MM-DDTHH:MM:SSZ` (`Timestamp`).
    public static func parseTimestamp(_ text: String) -> Date? { Timestamp.date(text) }

    /// The China Standard Time date of a `DF45` text; nil when it is not a timestamp.
    public static func chinaStandardDate(ofWrittenAt text: String) -> CardDate? {
        parseTimestamp(text).map { CardDate(date: $0) }
    }

    /// Whether `DF46` verifies with the writing device's key over "USAGE-V2" ‖ card number ‖ signed bytes (§5.5).
    public func trust(cardNumber: String, deviceKeys: [String: Curve25519.Signing.PublicKey]) -> UsageTrust {
        guard let body else { return .empty }
        guard let key = deviceKeys[body.terminalID] else { return .untrusted(.unknownDevice(body.terminalID)) }
        let message = UsageRecord.signedMessage(cardNumber: cardNumber, signedBytes: body.signedBytes)
        return key.isValidSignature(body.signature, for: message) ? .trusted(deviceID: body.terminalID) : .untrusted(.badSignature)
    }
}

/// What a terminal makes of a record's `DF46` (card spec §5.5).
public enum UsageTrust: Sendable, Equatable, CustomStringConvertible {
    /// The empty record of a new card: nothing to verify.
    case empty
    /// `DF46` verifies with the key of this device.
    case trusted(deviceID: String)
    /// `DF46` cannot be trusted (`usage_record_untrusted`); the record still counts.
    case untrusted(UntrustedReason)

    /// Why a record is untrusted.
    public enum UntrustedReason: Sendable, Equatable {
        /// `DF44` names a device whose key the terminal does not hold.
        case unknownDevice(String)
        /// The signature does not verify with the device's key.
        case badSignature
    }

    /// The verdict in words.
    public var description: String {
        switch self {
        case .empty: return "empty record (new card)"
        case .trusted(let d): return "signed by \(d)"
        case .untrusted(.unknownDevice(let d)): return "untrusted: device \(d) is not known"
        case .untrusted(.badSignature): return "untrusted: terminal signature does not verify"
        }
    }
}

/// Why a usage record cannot be built: thrown by `encode` and `next`, never a trap.
public enum UsageWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `next`: the period would hold more than 3 programs.
    case tooManyPrograms
    /// `next`: the sequence is already `UInt32.max`.
    case sequenceExhausted
    /// `encode`: not 1 to 3 entries.
    case entryCount(Int)
    /// A program code that is not 1–16 characters of `A–Z 0–9 -`.
    case invalidProgramCode(String)
    /// `encode`: a program appears twice.
    case duplicateProgram(String)
    /// A used amount (fen) below 0 or beyond the 4 bytes of `DF42`.
    case amountOutOfRange(program: String, Int64)
    /// `encode`: a period that is not 4 digits.
    case invalidPeriod(String)
    /// `encode`: a terminal identifier that is not 1–32 printable ASCII bytes.
    case invalidTerminalID(String)
    /// `encode`: a card number that is not 16 digits.
    case invalidCardNumber(String)
    /// `encode`: a challenge that is not 16 bytes.
    case invalidChallenge(length: Int)
    /// `encode`: the object would be longer than `maxObjectLength`.
    case tooLong(Int)

    /// The error as one line.
    public var description: String {
        switch self {
        case .tooManyPrograms: return "a usage record holds at most 3 programs"
        case .sequenceExhausted: return "the card's usage sequence is exhausted"
        case .entryCount(let n): return "a usage record holds 1 to 3 program entries, not \(n)"
        case .invalidProgramCode(let p): return "program code \"\(p)\" is not 1–16 characters of A–Z 0–9 -"
        case .duplicateProgram(let p): return "program \(p) appears twice"
        case .amountOutOfRange(let p, let f): return "used amount \(f) of \(p) does not fit 4 bytes"
        case .invalidPeriod(let p): return "period \"\(p)\" is not 4 digits"
        case .invalidTerminalID(let t): return "terminal identifier \"\(t)\" is not 1–32 ASCII bytes"
        case .invalidCardNumber(let c): return "card number \"\(c)\" is not 16 digits"
        case .invalidChallenge(let n): return "card challenge of \(n) bytes, expected 16"
        case .tooLong(let n): return "usage record of \(n) bytes, at most \(UsageRecord.maxObjectLength)"
        }
    }
}

extension UInt32 {
    var bigEndianBytes: [UInt8] { [UInt8(self >> 24), UInt8(self >> 16 & 0xFF), UInt8(self >> 8 & 0xFF), UInt8(self & 0xFF)] }
}
