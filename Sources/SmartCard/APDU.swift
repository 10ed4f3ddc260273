import KioskProtocol
import Foundation

/// A status word (SW1 SW2) at the end of every response APDU.
public struct StatusWord: Hashable, Sendable, CustomStringConvertible {
    /// The first status byte (`90` of `90 00`).
    public let sw1: UInt8
    /// The second status byte.
    public let sw2: UInt8
    /// The status word of two bytes.
    public init(_ sw1: UInt8, _ sw2: UInt8) { self.sw1 = sw1; self.sw2 = sw2 }
    /// The status word of a 16-bit value, SW1 high (`0x9000`).
    public init(_ value: UInt16) { self.init(UInt8(value >> 8), UInt8(value & 0xFF)) }
    /// SW1 SW2 as one 16-bit value, SW1 high.
    public var value: UInt16 { UInt16(sw1) << 8 | UInt16(sw2) }

    /// `90 00`: normal processing.
    public static let success = StatusWord(0x9000)
    /// `6A 82`: file or application not found (to both SELECTs: not a benefit card, card spec §2).
    public static let fileNotFound = StatusWord(0x6A82)
    /// `69 85`: conditions of use not satisfied.
    public static let conditionsNotSatisfied = StatusWord(0x6985)
    /// `6A 80`: incorrect data field.
    public static let wrongData = StatusWord(0x6A80)
    /// `65 81`: memory failure.
    public static let memoryFailure = StatusWord(0x6581)
    /// `6D 00`: instruction not supported.
    public static let insNotSupported = StatusWord(0x6D00)
    /// `6E 00`: class not supported.
    public static let claNotSupported = StatusWord(0x6E00)
    /// `6B 00`: wrong P1 P2.
    public static let wrongP1P2 = StatusWord(0x6B00)
    /// `67 00`: wrong length.
    public static let wrongLength = StatusWord(0x6700)

    /// Whether it is `90 00`.
    public var isSuccess: Bool { self == .success }
    /// Four uppercase hex digits (`9000`).
    public var description: String { Hex.encode([sw1, sw2], uppercase: true) }
}

/// A short command APDU (ISO/IEC 7816-4): Lc and Le at most 255 (Le 0 means 256).
public struct CommandAPDU: Hashable, Sendable, CustomStringConvertible {
    /// The header: class, instruction and the two parameters.
    public var cla: UInt8, ins: UInt8, p1: UInt8, p2: UInt8
    /// The command data (at most 255 bytes); empty for none, and then no Lc is sent.
    public var data: [UInt8]
    /// nil: no Le byte (case 1/3). 0: "up to 256".
    public var le: UInt8?

    /// A command; more than 255 bytes of data is a programming error (it traps).
    public init(cla: UInt8 = 0x00, ins: UInt8, p1: UInt8, p2: UInt8, data: [UInt8] = [], le: UInt8? = nil) {
        precondition(data.count <= 255, "short APDUs only")
        self.cla = cla; self.ins = ins; self.p1 = p1; self.p2 = p2; self.data = data; self.le = le
    }

    /// The command as sent: header, then Lc and data when there is data, then Le when set.
    public var bytes: [UInt8] {
        var out: [UInt8] = [cla, ins, p1, p2]
        if !data.isEmpty { out.append(UInt8(data.count)); out += data }
        if let le { out.append(le) }
        return out
    }

    /// Parses a short APDU as a card sees it. Returns nil for a malformed one.
    public init?(bytes b: [UInt8]) {
        guard b.count >= 4 else { return nil }
        cla = b[0]; ins = b[1]; p1 = b[2]; p2 = b[3]
        switch b.count {
        case 4: data = []; le = nil
        case 5: data = []; le = b[4]
        default:
            let lc = Int(b[4])
            guard lc > 0 else { return nil }
            if b.count == 5 + lc { data = Array(b[5..<5 + lc]); le = nil }
            else if b.count == 6 + lc { data = Array(b[5..<5 + lc]); le = b[5 + lc] }
            else { return nil }
        }
    }

    /// The command's bytes in uppercase hex.
    public var description: String { bytes.hexString }
}

/// A response APDU: data then the status word.
public struct ResponseAPDU: Hashable, Sendable, CustomStringConvertible {
    /// The response data, without the status word.
    public var data: [UInt8]
    /// The status word the response ends with.
    public var status: StatusWord
    /// A response from its data and status word.
    public init(data: [UInt8] = [], status: StatusWord) { self.data = data; self.status = status }
    /// Splits raw response bytes into data and status word; nil when there are fewer than two bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= 2 else { return nil }
        data = Array(bytes.dropLast(2))
        status = StatusWord(bytes[bytes.count - 2], bytes[bytes.count - 1])
    }
    /// The response as sent: data then SW1 SW2.
    public var bytes: [UInt8] { data + [status.sw1, status.sw2] }
    /// The data in uppercase hex, a space, then the status word (`9000` alone when there is no data).
    public var description: String { (data.isEmpty ? "" : data.hexString + " ") + status.description }
}

/// Anything that exchanges APDUs with a card (a PC/SC connection, an in-process emulator).
public protocol CardChannel: AnyObject {
    /// Sends one command and returns its final response, the transport rules of
    /// card spec §1 (61xx GET RESPONSE, 6Cxx retry) already applied.
    func transmit(_ command: CommandAPDU) throws -> ResponseAPDU
}

/// A channel that sends raw bytes and gets raw bytes back, with no transport rules.
public protocol RawCardChannel: AnyObject {
    /// Sends the command bytes as they are and returns the card's answer, status word included.
    func transmitRaw(_ command: [UInt8]) throws -> [UInt8]
}

/// Errors of the transport rules.
public enum TransportError: Error, Equatable, Sendable {
    /// The card's answer had fewer than two bytes.
    case malformedResponse([UInt8])
    /// The card kept answering 61xx/6Cxx past the bound.
    case tooManyChainedResponses
}

/// Card spec §1: a card may answer 61xx (fetch with GET RESPONSE) or 6Cxx (repeat with
/// Le = xx). Applies both, each at most `maxRounds` times, so a misbehaving card
/// cannot keep the terminal in a loop.
public enum TransportRules {
    /// How many `61 XX` and `6C XX` rounds one command may take in all before `tooManyChainedResponses`.
    public static let maxRounds = 64

    /// Sends `command` over `raw`, repeating it with the Le a `6C XX` names and collecting the
    /// data of every `61 XX` with GET RESPONSE; returns the joined data and the last status word.
    /// - Throws: `TransportError` for an answer under two bytes or too many rounds; whatever `raw` throws.
    public static func exchange(_ command: CommandAPDU, over raw: RawCardChannel) throws -> ResponseAPDU {
        var cmd = command
        var response = try parse(raw.transmitRaw(cmd.bytes))
        var rounds = 0
        while response.status.sw1 == 0x6C {
            rounds += 1
            guard rounds <= maxRounds else { throw TransportError.tooManyChainedResponses }
            cmd.le = response.status.sw2
            response = try parse(raw.transmitRaw(cmd.bytes))
        }
        var data = response.data
        while response.status.sw1 == 0x61 {
            rounds += 1
            guard rounds <= maxRounds else { throw TransportError.tooManyChainedResponses }
            let get = CommandAPDU(cla: command.cla & 0x03, ins: 0xC0, p1: 0, p2: 0, le: response.status.sw2)
            response = try parse(raw.transmitRaw(get.bytes))
            data += response.data
        }
        return ResponseAPDU(data: data, status: response.status)
    }

    private static func parse(_ bytes: [UInt8]) throws -> ResponseAPDU {
        guard let r = ResponseAPDU(bytes: bytes) else { throw TransportError.malformedResponse(bytes) }
        return r
    }
}

extension Sequence where Element == UInt8 {
    /// Uppercase hex, no separators.
    public var hexString: String { Hex.encode(self, uppercase: true) }
}

extension Array where Element == UInt8 {
    /// Bytes from hex (spaces allowed); nil if it is not hex.
    public init?(hex: String) {
        guard let bytes = Hex.decode(hex, .lenient) else { return nil }
        self = bytes
    }
}
