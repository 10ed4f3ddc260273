import Crypto
import Foundation
import SmartCard

/// EF.USAGE, template `72` (card spec §5): the card's own annual usage record.
public struct UsageRecord: Sendable, Equatable {
    public struct Entry: Sendable, Equatable, Codable {
        public var program: String
        public var usedFen: Int64
        public init(program: String, usedFen: Int64) { self.program = program; self.usedFen = usedFen }
    }

    /// Present unless the record is the empty `72 00` of a new card.
    public struct Body: Sendable, Equatable {
        public var period: String
        public var terminalID: String
        public var writtenAt: String
        public var entries: [Entry]
        public var signature: [UInt8]
        /// Every byte of the `72` value before `DF46`: what `DF46` signs.
        public var signedBytes: [UInt8]
    }

    public var sequence: UInt32
    public var body: Body?

    public static let empty = UsageRecord(sequence: 0, body: nil)
    public var isEmpty: Bool { body == nil }

    /// The used amount of `program` in `period`, 0 when the record is of another period.
    public func used(program: String, period: String) -> Int64 {
        guard let body, body.period == period else { return 0 }
        return body.entries.first { $0.program == program }?.usedFen ?? 0
    }

    public init(sequence: UInt32, body: Body?) { self.sequence = sequence; self.body = body }

    /// Parses and checks the form of a `72` object (not its signature).
    public init(object: TLV) throws {
        let file = "EF.USAGE"
        guard object.tag == 0x72 else { throw CardFormatError.wrongTemplate(file: file, expected: 0x72, found: object.tag) }
        if object.value.isEmpty { self = .empty; return }
        var offset = 0
        var children: [(TLV, Int)] = []
        do {
            while offset < object.value.count {
                let (tlv, used) = try TLV.parse(object.value, from: offset)
                children.append((tlv, offset))
                offset += used
            }
        } catch let e as TLVError { throw CardFormatError.malformedTLV(file: file, e) }
        guard let (last, lastOffset) = children.last, last.tag == 0xDF46 else {
            throw CardFormatError.invalidField(tag: 0xDF46, name: "terminal signature", why: "missing or not the last object")
        }
        guard last.value.count == 64 else {
            throw CardFormatError.invalidField(tag: 0xDF46, name: "terminal signature", why: "length \(last.value.count), expected 64")
        }
        var period: String?, seq: UInt32?, terminal: String?, written: String?
        var entries: [Entry] = []
        for (c, _) in children.dropLast() {
            switch c.tag {
            case 0xDF41:
                guard period == nil else { throw CardFormatError.duplicateField(tag: c.tag) }
                guard c.value.count == 4, c.value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    throw CardFormatError.invalidField(tag: c.tag, name: "period", why: "not 4 digits")
                }
                period = String(decoding: c.value, as: UTF8.self)
            case 0xDF43:
                guard seq == nil else { throw CardFormatError.duplicateField(tag: c.tag) }
                guard c.value.count == 4 else { throw CardFormatError.invalidField(tag: c.tag, name: "sequence", why: "not 4 bytes") }
                seq = c.value.reduce(0) { $0 << 8 | UInt32($1) }
            case 0xDF44:
                guard terminal == nil else { throw CardFormatError.duplicateField(tag: c.tag) }
                guard (1...32).contains(c.value.count), c.value.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                    throw CardFormatError.invalidField(tag: c.tag, name: "terminal identifier", why: "not 1–32 ASCII bytes")
                }
                terminal = String(decoding: c.value, as: UTF8.self)
            case 0xDF45:
                guard written == nil else { throw CardFormatError.duplicateField(tag: c.tag) }
                guard c.value.count == 20, c.value.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                    throw CardFormatError.invalidField(tag: c.tag, name: "written at", why: "not 20 ASCII bytes")
                }
                written = String(decoding: c.value, as: UTF8.self)
            case 0xE1:
                let inner: [TLV]
                do { inner = try c.children() } catch let e as TLVError { throw CardFormatError.malformedTLV(file: file, e) }
                guard let code = inner.first(tag: 0xDF47), (1...16).contains(code.value.count),
                      code.value.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                    throw CardFormatError.invalidField(tag: 0xDF47, name: "program code", why: "missing or not 1–16 ASCII bytes")
                }
                guard let used = inner.first(tag: 0xDF42), used.value.count == 4 else {
                    throw CardFormatError.invalidField(tag: 0xDF42, name: "used amount", why: "missing or not 4 bytes")
                }
                let program = String(decoding: code.value, as: UTF8.self)
                guard !entries.contains(where: { $0.program == program }) else { throw CardFormatError.duplicateField(tag: 0xDF47) }
                entries.append(Entry(program: program, usedFen: Int64(used.value.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })))
            case 0xDF46:
                throw CardFormatError.duplicateField(tag: 0xDF46)
            default:
                continue
            }
        }
        guard let period else { throw CardFormatError.missingField(tag: 0xDF41, name: "period") }
        guard let seq else { throw CardFormatError.missingField(tag: 0xDF43, name: "sequence") }
        guard let terminal else { throw CardFormatError.missingField(tag: 0xDF44, name: "terminal identifier") }
        guard let written else { throw CardFormatError.missingField(tag: 0xDF45, name: "written at") }
        guard (1...3).contains(entries.count) else {
            throw CardFormatError.invalidField(tag: 0xE1, name: "program entry", why: "\(entries.count) entries, expected 1 to 3")
        }
        sequence = seq
        body = Body(period: period, terminalID: terminal, writtenAt: written, entries: entries,
                    signature: last.value, signedBytes: Array(object.value[0..<lastOffset]))
    }

    /// Parses the raw contents of EF.USAGE (padding allowed).
    public init(fileBytes: [UInt8]) throws {
        let object: TLV
        do { object = try TLV.parseSingle(fileBytes).0 } catch let e as TLVError {
            throw CardFormatError.malformedTLV(file: "EF.USAGE", e)
        }
        try self.init(object: object)
    }

    /// Builds and signs a new record: the whole `72` object to write.
    public static func encode(period: String, sequence: UInt32, terminalID: String, writtenAt: Date,
                              entries: [Entry], signer: Curve25519.Signing.PrivateKey) throws -> [UInt8] {
        precondition(period.utf8.count == 4 && (1...3).contains(entries.count), "a usage record has a 4-digit period and 1 to 3 entries")
        var body: [UInt8] = []
        body += TLV(tag: 0xDF41, value: Array(period.utf8)).encoded
        body += TLV(tag: 0xDF43, value: sequence.bigEndianBytes).encoded
        body += TLV(tag: 0xDF44, value: Array(terminalID.utf8)).encoded
        body += TLV(tag: 0xDF45, value: Array(UsageRecord.timestamp(writtenAt).utf8)).encoded
        for e in entries {
            precondition(e.usedFen >= 0 && e.usedFen <= Int64(UInt32.max), "used amount fits 4 bytes")
            body += TLV.constructed(0xE1, [
                TLV(tag: 0xDF47, value: Array(e.program.utf8)),
                TLV(tag: 0xDF42, value: UInt32(e.usedFen).bigEndianBytes),
            ]).encoded
        }
        let signature = try signer.signature(for: body)
        return TLV(tag: 0x72, value: body + TLV(tag: 0xDF46, value: Array(signature)).encoded).encoded
    }

    /// The next record's sequence and entries: sequence + 1; the entries of the record's
    /// period carried over when it is `period`, with each program in `used` set to its new
    /// used amount for the period (the terminal's max(S + L, C) + deduction, card spec §5).
    public func next(period: String, setting used: [(program: String, usedFen: Int64)]) throws -> (sequence: UInt32, entries: [Entry]) {
        var entries: [Entry] = body?.period == period ? body!.entries : []
        for (program, fen) in used {
            precondition(fen >= 0 && fen <= Int64(UInt32.max), "a used amount fits 4 bytes")
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

    static func timestamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss'Z'"
        return f.string(from: date)
    }

    /// Whether `DF46` verifies against the writing device's key.
    public func trust(deviceKeys: [String: Curve25519.Signing.PublicKey]) -> UsageTrust {
        guard let body else { return .empty }
        guard let key = deviceKeys[body.terminalID] else { return .untrusted(.unknownDevice(body.terminalID)) }
        return key.isValidSignature(body.signature, for: body.signedBytes) ? .trusted(deviceID: body.terminalID) : .untrusted(.badSignature)
    }
}

public enum UsageTrust: Sendable, Equatable, CustomStringConvertible {
    case empty
    case trusted(deviceID: String)
    case untrusted(UntrustedReason)

    public enum UntrustedReason: Sendable, Equatable {
        case unknownDevice(String)
        case badSignature
    }

    public var description: String {
        switch self {
        case .empty: return "empty record (new card)"
        case .trusted(let d): return "signed by \(d)"
        case .untrusted(.unknownDevice(let d)): return "untrusted: device \(d) is not known"
        case .untrusted(.badSignature): return "untrusted: terminal signature does not verify"
        }
    }
}

public enum UsageWriteError: Error, Equatable, Sendable {
    case tooManyPrograms
    case sequenceExhausted
}

extension UInt32 {
    var bigEndianBytes: [UInt8] { [UInt8(self >> 24), UInt8(self >> 16 & 0xFF), UInt8(self >> 8 & 0xFF), UInt8(self & 0xFF)] }
}
