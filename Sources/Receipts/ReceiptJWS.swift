import Crypto
import KioskProtocol
import Foundation

/// Why a receipt JWS was refused (or could not be made).
public enum ReceiptJWSError: Error, Equatable, CustomStringConvertible {
    /// Not a compact JWS of three base64url parts with header and payload of the form receipt.md §1 describes.
    case malformed(String)
    /// The header's `alg` is not `EdDSA`.
    case wrongAlgorithm(String)
    /// No public key is trusted for the header's `kid`.
    case unknownKeyID(String)
    /// The signature does not verify with the key of `kid`.
    case badSignature
    /// The content cannot be signed as receipt.md §1 requires (device id, seq, card number or a figure out of bounds).
    case invalidContent(String)
    /// The JWS would be this many bytes; receipt.md §1 requires fewer than `ReceiptJWS.maximumBytes`.
    case tooLong(Int)

    /// The refusal as one line.
    public var description: String {
        switch self {
        case .malformed(let why): return "malformed receipt JWS: \(why)"
        case .wrongAlgorithm(let alg): return "receipt JWS algorithm \(alg) is not EdDSA"
        case .unknownKeyID(let kid): return "no trusted key for device \(kid)"
        case .badSignature: return "receipt JWS signature does not verify"
        case .invalidContent(let why): return "receipt cannot be signed: \(why)"
        case .tooLong(let n): return "receipt JWS is \(n) bytes; it must stay under \(ReceiptJWS.maximumBytes)"
        }
    }
}

/// What a receipt QR says (receipt.md §1, version 2): the signer (`kid`) and the payload's fields.
public struct VerifiedReceipt: Sendable, Equatable {
    /// The device that signed it (`kid`).
    public var deviceID: String
    /// `r`: the record's `seq`.
    public var seq: Int64
    /// `k`: the kind.
    public var kind: ReceiptKind
    /// `c`: the masked card number.
    public var maskedCardNumber: String
    /// `t`: when, Unix seconds.
    public var unixTime: Int64
    /// `b`: the whole bill in fen (subsidies only).
    public var billFen: Int64?
    /// `s`: this program's subsidy (subsidies) or the amount given back (reversals), in fen.
    public var subsidyFen: Int64?
    /// `p`: what the patient pays of the whole bill, in fen (subsidies only).
    public var patientPaysFen: Int64?
    /// `l`: the program's allowance left this year after the subsidy, in fen (subsidies only).
    public var allowanceLeftFen: Int64?
    /// `v`: the `seq` of the record reversed, same device (reversals only).
    public var reversedSeq: Int64?
    /// `m`: the matter code (legal aid only).
    public var matterCode: String?

    /// A receipt's fields; those of the other kinds stay nil. Amounts in fen.
    public init(deviceID: String, seq: Int64, kind: ReceiptKind, maskedCardNumber: String, unixTime: Int64,
                billFen: Int64? = nil, subsidyFen: Int64? = nil, patientPaysFen: Int64? = nil, allowanceLeftFen: Int64? = nil,
                reversedSeq: Int64? = nil, matterCode: String? = nil) {
        self.deviceID = deviceID; self.seq = seq; self.kind = kind; self.maskedCardNumber = maskedCardNumber
        self.unixTime = unixTime; self.billFen = billFen; self.subsidyFen = subsidyFen; self.patientPaysFen = patientPaysFen
        self.allowanceLeftFen = allowanceLeftFen; self.reversedSeq = reversedSeq; self.matterCode = matterCode
    }

    /// The record's `record_id`, `<kid>-<r>`.
    public var recordID: String { "\(deviceID)-\(seq)" }
    /// For a reversal, the reversed record's `record_id`, `<kid>-<v>`.
    public var reversedRecordID: String? { reversedSeq.map { "\(deviceID)-\($0)" } }
    /// For a reversal, `s`: the amount given back.
    public var amountFen: Int64? { kind == .reversal ? subsidyFen : nil }
    /// `t` as a date.
    public var time: Date { Date(timeIntervalSince1970: TimeInterval(unixTime)) }
}

/// The receipt QR content: a compact JWS (RFC 7515) signed with EdDSA / Ed25519 (RFC 8037) by the device key.
public enum ReceiptJWS {
    /// receipt.md §1: the whole JWS must be shorter than this, so that its QR fits a 58 mm printer.
    public static let maximumBytes = 300
    /// receipt.md §1: `r` (and `v`) at most 99,999,999.
    public static let maximumSeq: Int64 = 99_999_999
    /// receipt.md §1: a bill is at most 99,999,999 fen.
    public static let maximumBillFen: Int64 = 99_999_999
    /// snapshot.md: `limit_fen` at most 100,000,000, so `l` too.
    public static let maximumAllowanceFen: Int64 = 100_000_000
    /// `t` has at most 10 digits.
    public static let maximumUnixTime: Int64 = 9_999_999_999

    /// The payload's keys by kind, in the order they are signed.
    static func keys(of kind: ReceiptKind) -> [String] {
        switch kind {
        case .subsidy: return ["r", "k", "c", "t", "b", "s", "p", "l"]
        case .reversal: return ["r", "k", "c", "t", "v", "s"]
        case .legalAid: return ["r", "k", "c", "t", "m"]
        }
    }

    /// Signs the payload of `content` with the device key.
    ///
    /// The header is exactly `{"alg":"EdDSA","kid":"<device_id>"}`; the payload's keys come in the order
    /// `r,k,c,t` then `b,s,p,l` (subsidy), `v,s` (reversal) or `m` (legal aid), no whitespace. Ed25519 is
    /// deterministic, so the same content and key always give the same JWS.
    /// - Throws: `ReceiptJWSError.invalidContent` for a device id, seq, card number, matter code or figure
    ///   out of receipt.md's bounds; `.tooLong` if the result would be `maximumBytes` or more; a signing failure.
    public static func sign(content: ReceiptContent, key: Curve25519.Signing.PrivateKey) throws -> String {
        guard Identifiers.isDeviceID(content.deviceID) else {
            throw ReceiptJWSError.invalidContent("device id \(content.deviceID) is not 1–20 characters of A–Z 0–9 -")
        }
        guard Identifiers.isCardNumber(content.cardNumber) else { throw ReceiptJWSError.invalidContent("the card number is not 16 digits") }
        let fields = payloadFields(for: content)
        if let problem = problem(in: fields) { throw ReceiptJWSError.invalidContent(problem) }
        let signingInput = Base64URL.encode(Array(header(kid: content.deviceID).utf8)) + "."
            + Base64URL.encode(Array(payload(fields).utf8))
        let signature = try key.signature(for: Array(signingInput.utf8))
        let jws = signingInput + "." + Base64URL.encode(Array(signature))
        let length = jws.utf8.count
        guard length < maximumBytes else { throw ReceiptJWSError.tooLong(length) }
        return jws
    }

    /// Verifies a receipt JWS against the trusted device keys (by `kid`) and returns what it says: the
    /// signature, then the payload's form (exactly the keys of its kind, integers and codes within bounds).
    /// - Throws: `ReceiptJWSError` — `malformed`, `wrongAlgorithm`, `unknownKeyID`, `badSignature`.
    public static func verify(_ jws: String, keys: [String: Curve25519.Signing.PublicKey]) throws -> VerifiedReceipt {
        guard jws.utf8.count < maximumBytes else { throw ReceiptJWSError.malformed("\(jws.utf8.count) bytes; a receipt JWS is under \(maximumBytes)") }
        let parts = jws.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw ReceiptJWSError.malformed("expected 3 parts, found \(parts.count)") }
        guard let headerBytes = Base64URL.decode(parts[0]) else { throw ReceiptJWSError.malformed("header is not base64url") }
        guard let payloadBytes = Base64URL.decode(parts[1]) else { throw ReceiptJWSError.malformed("payload is not base64url") }
        guard let signature = Base64URL.decode(parts[2]) else { throw ReceiptJWSError.malformed("signature is not base64url") }

        guard let header = StrictJSON.flatObject(headerBytes) else { throw ReceiptJWSError.malformed("header is not a flat JSON object") }
        guard case .string(let alg)? = header["alg"] else { throw ReceiptJWSError.malformed("header has no alg") }
        guard alg == "EdDSA" else { throw ReceiptJWSError.wrongAlgorithm(alg) }
        guard case .string(let kid)? = header["kid"], Set(header.keys) == ["alg", "kid"] else {
            throw ReceiptJWSError.malformed("header must be exactly alg and kid")
        }
        guard Identifiers.isDeviceID(kid) else { throw ReceiptJWSError.malformed("kid is not a device id") }
        guard let key = keys[kid] else { throw ReceiptJWSError.unknownKeyID(kid) }
        guard signature.count == 64 else { throw ReceiptJWSError.malformed("signature is \(signature.count) bytes, not 64") }
        let signingInput = Array((parts[0] + "." + parts[1]).utf8)
        guard key.isValidSignature(signature, for: signingInput) else { throw ReceiptJWSError.badSignature }

        guard let fields = StrictJSON.flatObject(payloadBytes) else { throw ReceiptJWSError.malformed("payload is not a flat JSON object") }
        if let problem = problem(in: fields) { throw ReceiptJWSError.malformed(problem) }
        func int(_ k: String) -> Int64? { if case .integer(let v)? = fields[k] { return v }; return nil }
        func str(_ k: String) -> String? { if case .string(let v)? = fields[k] { return v }; return nil }
        // `problem(in:)` has checked every key and type, so these are there.
        guard let seq = int("r"), let kindCode = str("k"), let kind = ReceiptKind(rawValue: kindCode), let card = str("c"), let t = int("t") else {
            throw ReceiptJWSError.malformed("payload lacks r, k, c or t")
        }
        return VerifiedReceipt(deviceID: kid, seq: seq, kind: kind, maskedCardNumber: card, unixTime: t,
                               billFen: int("b"), subsidyFen: int("s"), patientPaysFen: int("p"), allowanceLeftFen: int("l"),
                               reversedSeq: int("v"), matterCode: str("m"))
    }

    /// The payload's form (receipt.md §1), signing and verifying alike: exactly the keys of its kind, each of its
    /// type, within bounds. `nil` when it is well formed, else why not.
    static func problem(in fields: [String: StrictJSON.Value]) -> String? {
        guard case .string(let k)? = fields["k"] else { return "k is missing or not a string" }
        guard let kind = ReceiptKind(rawValue: k) else { return "unknown kind \(k)" }
        let expected = keys(of: kind)
        guard Set(fields.keys) == Set(expected) else {
            return "a \(k) payload has exactly \(expected.joined(separator: ",")), not \(fields.keys.sorted().joined(separator: ","))"
        }
        func int(_ key: String, _ range: ClosedRange<Int64>) -> Int64? {
            if case .integer(let v)? = fields[key], range.contains(v) { return v }
            return nil
        }
        guard let r = int("r", 1...maximumSeq) else { return "r is not a seq of 1 to \(maximumSeq)" }
        guard case .string(let c)? = fields["c"], isMaskedCardNumber(c) else { return "c is not a masked card number (4 digits, 8 *, 4 digits)" }
        guard int("t", 0...maximumUnixTime) != nil else { return "t is not Unix seconds" }
        switch kind {
        case .subsidy:
            guard let b = int("b", 1...maximumBillFen) else { return "b is not a bill of 1 to \(maximumBillFen) fen" }
            guard let s = int("s", 1...b) else { return "s is not a subsidy of 1 fen to the bill" }
            guard int("p", 0...(b - s)) != nil else { return "p is not what is left of the bill after the subsidy or less" }
            guard int("l", 0...maximumAllowanceFen) != nil else { return "l is not an allowance of 0 to \(maximumAllowanceFen) fen" }
        case .reversal:
            guard r > 1, int("v", 1...(r - 1)) != nil else { return "v is not the seq of an earlier record" }
            guard int("s", 1...maximumBillFen) != nil else { return "s is not an amount of 1 to \(maximumBillFen) fen" }
        case .legalAid:
            guard case .string(let m)? = fields["m"], Identifiers.isMatterCode(m) else { return "m is not a matter code" }
        }
        return nil
    }

    /// `6217********1234`: 4 digits, 8 `*`, 4 digits (a 16-digit card number masked).
    static func isMaskedCardNumber(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 16 else { return false }
        return u.enumerated().allSatisfy { i, c in (4..<12).contains(i) ? c == 0x2A : (c >= 0x30 && c <= 0x39) }
    }

    /// The protected header, `{"alg":"EdDSA","kid":"…"}`.
    static func header(kid: String) -> String {
        "{\"alg\":\"EdDSA\",\"kid\":" + JSONText.asciiString(kid) + "}"
    }

    /// The payload's fields (`c` masked, `t` in whole seconds).
    static func payloadFields(for content: ReceiptContent) -> [String: StrictJSON.Value] {
        var f: [String: StrictJSON.Value] = [
            "r": .integer(content.seq), "k": .string(content.kind.rawValue),
            "c": .string(Masking.cardNumber(content.cardNumber)),
            "t": .integer(Int64(content.time.timeIntervalSince1970.rounded(.down))),
        ]
        switch content.body {
        case .subsidy(let a):
            f["b"] = .integer(a.billFen); f["s"] = .integer(a.subsidyFen)
            f["p"] = .integer(a.patientPaysFen); f["l"] = .integer(a.allowanceLeftFen)
        case .reversal(let r):
            f["v"] = .integer(r.reversedSeq); f["s"] = .integer(r.amountFen)
        case .legalAid(let m):
            f["m"] = .string(m.code)
        }
        return f
    }

    /// The payload JSON of `content`: keys in the order of receipt.md §1, no whitespace, non-ASCII escaped as `\uXXXX`.
    static func payload(for content: ReceiptContent) -> String {
        payload(payloadFields(for: content))
    }

    static func payload(_ fields: [String: StrictJSON.Value]) -> String {
        let order: [String]
        if case .string(let k)? = fields["k"], let kind = ReceiptKind(rawValue: k) { order = keys(of: kind) } else { order = fields.keys.sorted() }
        return "{" + order.compactMap { key in fields[key].map { JSONText.asciiString(key) + ":" + $0.json } }.joined(separator: ",") + "}"
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
