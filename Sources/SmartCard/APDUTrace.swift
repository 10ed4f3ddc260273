import Foundation
import KioskProtocol

/// A channel that writes every command and response to a trace, for diagnosing a card in the
/// field (issue 22; after OpenSC's `OPENSC_DEBUG` APDU log), masked by default: what a
/// technician may paste into a ticket without carrying a person's data or a signature.
///
/// One line per direction: `>` the command, `<` the response with its time in milliseconds.
/// Masked (`APDUTrace.mask`): runs of 8 or more ASCII digits (card, identity and phone
/// numbers) keep their first 4 and last 4 digits; UTF-8 text outside ASCII (a holder's name)
/// and any value of 64 bytes (an Ed25519 signature) become `<n bytes masked>`. Off by default:
/// `kioskctl card inspect --trace`, `kioskd --trace-apdu`.
public final class TracingChannel: CardChannel {
    let inner: CardChannel
    let masked: Bool
    let write: (String) -> Void
    let clock: () -> UInt64

    /// Traces `inner` into `write`.
    /// - Parameters:
    ///   - masked: false only for a bench or a test card: the trace then holds every byte.
    ///   - clock: monotonic nanoseconds (injectable for tests).
    public init(_ inner: CardChannel, masked: Bool = true, clock: @escaping () -> UInt64 = { DispatchTime.now().uptimeNanoseconds },
                write: @escaping (String) -> Void) {
        self.inner = inner; self.masked = masked; self.write = write; self.clock = clock
    }

    /// Sends `command` through the inner channel, writing it and its response (or its error).
    public func transmit(_ command: CommandAPDU) throws -> ResponseAPDU {
        let name = APDUTrace.name(of: command).map { "  (\($0))" } ?? ""
        write("apdu > " + APDUTrace.header(command) + APDUTrace.render(command.data, masked: masked) + name)
        let start = clock()
        do {
            let response = try inner.transmit(command)
            let ms = Double(clock() &- start) / 1_000_000
            let data = response.data.isEmpty ? "" : APDUTrace.render(response.data, masked: masked) + " "
            write("apdu < " + data + response.status.description + String(format: "  %.1f ms", ms))
            return response
        } catch {
            let ms = Double(clock() &- start) / 1_000_000
            write("apdu ! \(error)" + String(format: "  %.1f ms", ms))
            throw error
        }
    }
}

/// How `TracingChannel` writes bytes: hex, with personal data and signatures masked.
public enum APDUTrace {
    /// `CLA INS P1 P2 [Lc] ` of `command` in hex, and its `Le` after the data when set.
    static func header(_ c: CommandAPDU) -> String {
        var h = Hex.encode([c.cla, c.ins, c.p1, c.p2], uppercase: true)
        if !c.data.isEmpty { h += " " + Hex.encode([UInt8(c.data.count)], uppercase: true) + " " }
        return h
    }

    /// What the instruction is, for the instructions the card spec uses.
    static func name(of c: CommandAPDU) -> String? {
        switch c.ins {
        case 0xA4: return "SELECT"
        case 0xB0: return "READ BINARY"
        case 0xCA, 0xCB: return "GET DATA"
        case 0x84: return "GET CHALLENGE"
        case 0x88: return "INTERNAL AUTHENTICATE"
        case 0xD6: return "UPDATE BINARY"
        case 0xDA, 0xDB: return "PUT DATA"
        case 0xC0: return "GET RESPONSE"
        default: return nil
        }
    }

    /// `bytes` as uppercase hex, or masked (see `mask`) when `masked`.
    public static func render(_ bytes: [UInt8], masked: Bool) -> String {
        guard masked else { return Hex.encode(bytes, uppercase: true) }
        return mask(bytes)
    }

    /// `bytes` as uppercase hex with personal data and signatures masked: the value of every
    /// BER-TLV element (when the bytes parse as TLV), or the bytes as a whole otherwise, goes
    /// through `maskValue`.
    public static func mask(_ bytes: [UInt8]) -> String {
        if let elements = try? TLV.parseAll(bytes), !elements.isEmpty {
            return elements.map(maskElement).joined(separator: " ")
        }
        return maskValue(bytes)
    }

    static func maskElement(_ e: TLV) -> String {
        let tag = Hex.encode(e.tagBytes, uppercase: true)
        let length = Hex.encode(TLV.encodeLength(e.value.count), uppercase: true)
        if e.isConstructed, let children = try? e.children() {
            return "\(tag) \(length) [" + children.map(maskElement).joined(separator: " ") + "]"
        }
        return "\(tag) \(length) " + maskValue(e.value)
    }

    /// One value: 64 bytes (a signature) or text outside ASCII (a name) masked whole; each
    /// run of 8 or more ASCII digits (a card, identity or phone number) keeps its first and
    /// last 4 digits, the rest shown as `**` a byte.
    static func maskValue(_ v: [UInt8]) -> String {
        if v.count == 64 { return "<64 bytes masked>" }
        if v.contains(where: { $0 >= 0x80 }), String(validating: v, as: UTF8.self) != nil { return "<\(v.count) bytes masked>" }
        var out: [String] = v.map { Hex.encode([$0], uppercase: true) }
        var i = 0
        while i < v.count {
            guard v[i] >= 0x30 && v[i] <= 0x39 else { i += 1; continue }
            var j = i
            while j < v.count && v[j] >= 0x30 && v[j] <= 0x39 { j += 1 }
            if j - i >= 8 { for k in (i + 4)..<(j - 4) { out[k] = "**" } }
            i = j
        }
        return out.joined()
    }
}
