import Crypto
import Foundation

/// Why a receipt JWS was refused (or could not be made).
public enum ReceiptJWSError: Error, Equatable, CustomStringConvertible {
    /// Not a compact JWS of three base64url parts with JSON header and payload as receipt.md §1 describes.
    case malformed(String)
    /// The header's `alg` is not `EdDSA`.
    case wrongAlgorithm(String)
    /// No public key is trusted for the header's `kid`.
    case unknownKeyID(String)
    /// The signature does not verify with the key of `kid`.
    case badSignature
    /// The JWS would be this many bytes; receipt.md §1 requires fewer than `ReceiptJWS.maximumBytes`.
    case tooLong(Int)

    public var description: String {
        switch self {
        case .malformed(let why): return "malformed receipt JWS: \(why)"
        case .wrongAlgorithm(let alg): return "receipt JWS algorithm \(alg) is not EdDSA"
        case .unknownKeyID(let kid): return "no trusted key for device \(kid)"
        case .badSignature: return "receipt JWS signature does not verify"
        case .tooLong(let n): return "receipt JWS is \(n) bytes; it must stay under \(ReceiptJWS.maximumBytes)"
        }
    }
}

/// What a verified receipt QR says (receipt.md §1).
public struct VerifiedReceipt: Sendable, Equatable {
    /// The device that signed it (`kid`).
    public var deviceID: String
    /// `r`: the record id.
    public var recordID: String
    /// `k`: the kind.
    public var kind: ReceiptKind
    /// `c`: the masked card number.
    public var maskedCardNumber: String
    /// `t`: when, Unix seconds.
    public var unixTime: Int64
    /// `b`: the bill in fen (subsidies only).
    public var billFen: Int64?
    /// `s`: the subsidy in fen (subsidies only).
    public var subsidyFen: Int64?
    /// `m`: the matter code (legal aid only).
    public var matterCode: String?

    /// `t` as a date.
    public var time: Date { Date(timeIntervalSince1970: TimeInterval(unixTime)) }
}

/// The receipt QR content: a compact JWS (RFC 7515) signed with EdDSA / Ed25519 (RFC 8037) by the device key.
public enum ReceiptJWS {
    /// receipt.md §1: the whole JWS must be shorter than this, so that its QR fits a 58 mm printer.
    public static let maximumBytes = 300

    /// Signs the payload of `content` with the device key.
    ///
    /// The header is exactly `{"alg":"EdDSA","kid":"<device_id>"}`; the payload's keys come in the order
    /// `r,k,c,t` then `b,s` (subsidy) or `m` (legal aid). Ed25519 is deterministic (swift-crypto over
    /// BoringSSL on Linux), so the same content and key always give the same JWS.
    /// - Throws: `ReceiptJWSError.tooLong` if the result would be `maximumBytes` or more; a signing failure.
    public static func sign(content: ReceiptContent, key: Curve25519.Signing.PrivateKey) throws -> String {
        let signingInput = Base64URL.encode(Array(header(kid: content.deviceID).utf8)) + "."
            + Base64URL.encode(Array(payload(for: content).utf8))
        let signature = try key.signature(for: Array(signingInput.utf8))
        let jws = signingInput + "." + Base64URL.encode(Array(signature))
        let length = jws.utf8.count
        guard length < maximumBytes else { throw ReceiptJWSError.tooLong(length) }
        return jws
    }

    /// Verifies a receipt JWS against the trusted device keys (by `kid`) and returns what it says.
    /// - Throws: `ReceiptJWSError` — `malformed`, `wrongAlgorithm`, `unknownKeyID`, `badSignature`.
    public static func verify(_ jws: String, keys: [String: Curve25519.Signing.PublicKey]) throws -> VerifiedReceipt {
        let parts = jws.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw ReceiptJWSError.malformed("expected 3 parts, found \(parts.count)") }
        guard let headerBytes = Base64URL.decode(parts[0]) else { throw ReceiptJWSError.malformed("header is not base64url") }
        guard let payloadBytes = Base64URL.decode(parts[1]) else { throw ReceiptJWSError.malformed("payload is not base64url") }
        guard let signature = Base64URL.decode(parts[2]) else { throw ReceiptJWSError.malformed("signature is not base64url") }

        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: Data(headerBytes)) } catch {
            throw ReceiptJWSError.malformed("header is not a JSON object with alg and kid")
        }
        guard header.alg == "EdDSA" else { throw ReceiptJWSError.wrongAlgorithm(header.alg) }
        guard header.crit == nil else { throw ReceiptJWSError.malformed("unsupported crit header") }
        guard let key = keys[header.kid] else { throw ReceiptJWSError.unknownKeyID(header.kid) }
        guard signature.count == 64 else { throw ReceiptJWSError.malformed("signature is \(signature.count) bytes, not 64") }
        let signingInput = Array((parts[0] + "." + parts[1]).utf8)
        guard key.isValidSignature(signature, for: signingInput) else { throw ReceiptJWSError.badSignature }

        let p: Payload
        do { p = try JSONDecoder().decode(Payload.self, from: Data(payloadBytes)) } catch {
            throw ReceiptJWSError.malformed("payload lacks r, k, c or t")
        }
        guard let kind = ReceiptKind(rawValue: p.k) else { throw ReceiptJWSError.malformed("unknown kind \(p.k)") }
        switch kind {
        case .subsidy where p.b == nil || p.s == nil: throw ReceiptJWSError.malformed("a subsidy needs b and s")
        case .legalAid where p.m == nil: throw ReceiptJWSError.malformed("a legal-aid receipt needs m")
        default: break
        }
        return VerifiedReceipt(deviceID: header.kid, recordID: p.r, kind: kind, maskedCardNumber: p.c, unixTime: p.t,
                               billFen: p.b, subsidyFen: p.s, matterCode: p.m)
    }

    /// The protected header, `{"alg":"EdDSA","kid":"…"}`.
    static func header(kid: String) -> String {
        "{\"alg\":\"EdDSA\",\"kid\":" + JSONText.string(kid) + "}"
    }

    /// The payload JSON, keys in the order of receipt.md §1, no whitespace, non-ASCII escaped as `\uXXXX`.
    static func payload(for content: ReceiptContent) -> String {
        var json = "{\"r\":" + JSONText.string(content.recordID)
        json += ",\"k\":" + JSONText.string(content.kind.rawValue)
        json += ",\"c\":" + JSONText.string(Masking.cardNumber(content.cardNumber))
        json += ",\"t\":\(Int64(content.time.timeIntervalSince1970.rounded(.down)))"
        switch content.body {
        case .subsidy(let a): json += ",\"b\":\(a.billFen),\"s\":\(a.subsidyFen)"
        case .legalAid(let m): json += ",\"m\":" + JSONText.string(m.code)
        case .reversal: break
        }
        return json + "}"
    }

    private struct Header: Decodable {
        var alg: String
        var kid: String
        var crit: [String]?
    }

    private struct Payload: Decodable {
        var r: String
        var k: String
        var c: String
        var t: Int64
        var b: Int64?
        var s: Int64?
        var m: String?
    }
}

/// JSON text built by hand, so that key order is fixed.
enum JSONText {
    /// A JSON string literal: quotes, backslash and control characters escaped, everything outside ASCII
    /// as `\uXXXX` (UTF-16), as Python's `json.dumps` does by default.
    static func string(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
            default:
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        return out + "\""
    }
}

/// base64url without padding (RFC 7515 §2).
public enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let values: [Int8] = {
        var v = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { v[Int(c)] = Int8(i) }
        return v
    }()

    /// Encodes without `=` padding.
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let input = Array(bytes)
        var out = [UInt8]()
        out.reserveCapacity((input.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= input.count {
            let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        switch input.count - i {
        case 1:
            let n = UInt32(input[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)]]
        case 2:
            let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)]]
        default: break
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes unpadded base64url; `nil` on any other character, on padding, on an impossible length
    /// or on non-zero leftover bits (so each value has exactly one encoding).
    public static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 4 != 1 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in chars {
            let v = values[Int(c)]
            guard v >= 0 else { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(acc >> UInt32(bits) & 0xFF))
                acc &= (1 << UInt32(bits)) - 1
            }
        }
        guard acc == 0 else { return nil }
        return out
    }
}
