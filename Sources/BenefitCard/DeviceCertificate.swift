import Crypto
import Foundation
import SmartCard

/// Why bytes are not a device certificate (card spec v2 §5.2), or one cannot be issued.
public enum DeviceCertificateError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not BER-TLV.
    case malformedTLV(TLVError)
    /// The object's tag is not `7F21`.
    case notACertificate(found: UInt32)
    /// This many bytes follow the `7F21` object.
    case trailingBytes(Int)
    /// The objects found (their tags, in hex) are not `42 5F20 86 5F25 5F24 5F37` in order.
    case wrongObjects(String)
    /// One object has the wrong length or form.
    case invalidField(tag: UInt32, why: String)
    /// Issuing: valid from (`YYYYMMDD`) is after valid through.
    case validityReversed(from: String, through: String)

    /// The error as one line naming the certificate field.
    public var description: String {
        switch self {
        case .malformedTLV(let e): return "device certificate: malformed BER-TLV (\(e))"
        case .notACertificate(let t): return "device certificate: template \(String(t, radix: 16, uppercase: true)) where 7F21 is expected"
        case .trailingBytes(let n): return "device certificate: \(n) bytes after the 7F21 object"
        case .wrongObjects(let found): return "device certificate: objects \(found) are not 42 5F20 86 5F25 5F24 5F37 in this order"
        case .invalidField(let t, let why): return "device certificate: field \(String(t, radix: 16, uppercase: true)): \(why)"
        case .validityReversed(let f, let t): return "device certificate: valid from \(f) is after valid through \(t)"
        }
    }
}

/// A device certificate, `7F21` (card spec v2 §5.2): the issuer's device CA vouches for a
/// device's Ed25519 key, for the days `validFrom` … `validThrough` in China Standard Time.
public struct DeviceCertificate: Sendable, Equatable {
    /// `42`: the identifier of the device CA key that signed (1–32 ASCII bytes).
    public var caKeyID: String
    /// `5F20`: the device identifier, which the device writes as `DF44` (1–32 ASCII bytes).
    public var deviceID: String
    /// `86`: the device's raw 32-byte Ed25519 public key.
    public var devicePublicKey: [UInt8]
    /// `5F25`: the first day of validity (China Standard Time).
    public var validFrom: CardDate
    /// `5F24`: the last day of validity (China Standard Time).
    public var validThrough: CardDate
    /// `5F37`: the CA's 64-byte Ed25519 signature over `signedBytes`.
    public var signature: [UInt8]
    /// The whole `7F21` object, as sent in PSO VERIFY CERTIFICATE.
    public var encoded: [UInt8]

    static let tagOrder: [UInt32] = [0x42, 0x5F20, 0x86, 0x5F25, 0x5F24, 0x5F37]

    /// Strict parse: exactly one `7F21` object, its six objects in the order of §5.2 with
    /// their lengths; nothing after it.
    public init(bytes: [UInt8]) throws {
        let tlv: TLV, used: Int
        do { (tlv, used) = try TLV.parse(bytes) } catch let e as TLVError { throw DeviceCertificateError.malformedTLV(e) }
        guard tlv.tag == 0x7F21 else { throw DeviceCertificateError.notACertificate(found: tlv.tag) }
        guard used == bytes.count else { throw DeviceCertificateError.trailingBytes(bytes.count - used) }
        var children: [(tlv: TLV, offset: Int)] = []
        var offset = 0
        do {
            while offset < tlv.value.count {
                let (c, n) = try TLV.parse(tlv.value, from: offset)
                children.append((c, offset))
                offset += n
            }
        } catch let e as TLVError { throw DeviceCertificateError.malformedTLV(e) }
        guard children.map(\.tlv.tag) == DeviceCertificate.tagOrder else {
            throw DeviceCertificateError.wrongObjects(children.map { String($0.tlv.tag, radix: 16, uppercase: true) }.joined(separator: " "))
        }
        let v = children.map(\.tlv.value)
        func ascii(_ i: Int) throws -> String {
            guard (1...32).contains(v[i].count), v[i].allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                throw DeviceCertificateError.invalidField(tag: DeviceCertificate.tagOrder[i], why: "not 1–32 ASCII bytes")
            }
            return String(decoding: v[i], as: UTF8.self)
        }
        func date(_ i: Int) throws -> CardDate {
            guard v[i].count == 8, let d = CardDate(String(decoding: v[i], as: UTF8.self)) else {
                throw DeviceCertificateError.invalidField(tag: DeviceCertificate.tagOrder[i], why: "not a YYYYMMDD date")
            }
            return d
        }
        caKeyID = try ascii(0)
        deviceID = try ascii(1)
        guard v[2].count == 32 else { throw DeviceCertificateError.invalidField(tag: 0x86, why: "length \(v[2].count), expected 32") }
        devicePublicKey = v[2]
        validFrom = try date(3)
        validThrough = try date(4)
        guard v[5].count == 64 else { throw DeviceCertificateError.invalidField(tag: 0x5F37, why: "length \(v[5].count), expected 64") }
        signature = v[5]
        encoded = bytes
        signedBytes = Array(tlv.value[0..<children[5].offset])
    }

    /// Every byte of the `7F21` value before `5F37`: what the CA signs.
    public private(set) var signedBytes: [UInt8]

    /// Issues a certificate: the CA signs the value bytes before `5F37`.
    public static func issue(caKeyID: String, caKey: Curve25519.Signing.PrivateKey, deviceID: String, devicePublicKey: [UInt8],
                             validFrom: CardDate, validThrough: CardDate) throws -> DeviceCertificate {
        func asciiOK(_ s: String) -> Bool { (1...32).contains(s.utf8.count) && s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } }
        guard asciiOK(caKeyID) else { throw DeviceCertificateError.invalidField(tag: 0x42, why: "not 1–32 ASCII bytes") }
        guard asciiOK(deviceID) else { throw DeviceCertificateError.invalidField(tag: 0x5F20, why: "not 1–32 ASCII bytes") }
        guard devicePublicKey.count == 32 else {
            throw DeviceCertificateError.invalidField(tag: 0x86, why: "length \(devicePublicKey.count), expected 32")
        }
        guard validFrom <= validThrough else {
            throw DeviceCertificateError.validityReversed(from: validFrom.compact, through: validThrough.compact)
        }
        var body: [UInt8] = []
        body += TLV(tag: 0x42, value: Array(caKeyID.utf8)).encoded
        body += TLV(tag: 0x5F20, value: Array(deviceID.utf8)).encoded
        body += TLV(tag: 0x86, value: devicePublicKey).encoded
        body += TLV(tag: 0x5F25, value: Array(validFrom.compact.utf8)).encoded
        body += TLV(tag: 0x5F24, value: Array(validThrough.compact.utf8)).encoded
        let signature = Array(try caKey.signature(for: body))
        return try DeviceCertificate(bytes: TLV(tag: 0x7F21, value: body + TLV(tag: 0x5F37, value: signature).encoded).encoded)
    }

    /// Whether the CA named by `42` is among `caKeys` and its signature verifies.
    public func verify(caKeys: [String: Curve25519.Signing.PublicKey]) -> Bool {
        guard let key = caKeys[caKeyID] else { return false }
        return key.isValidSignature(signature, for: signedBytes)
    }

    /// Whether the China Standard Time date of `date` is within `validFrom` … `validThrough`.
    public func isValid(at date: Date) -> Bool {
        let day = CardDate(date: date)
        return validFrom <= day && day <= validThrough
    }

    /// The first instant of `validFrom`, China Standard Time.
    public var notBefore: Date { validFrom.startChinaStandardTime }
    /// The first instant after `validThrough` ends, China Standard Time.
    public var notAfter: Date { validThrough.endOfDayChinaStandardTime }
}

extension DeviceCertificate {
    /// The bytes of a certificate file as the platform hands it over: the `7F21` object in
    /// binary, or as hex (spaces allowed) or base64 text. What is neither is returned as it
    /// is, for `init(bytes:)` to refuse.
    public static func fileBytes(_ data: Data) -> [UInt8] {
        let bytes = [UInt8](data)
        if bytes.first == 0x7F { return bytes }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let hex = [UInt8](hex: text.replacingOccurrences(of: " ", with: "")) { return hex }
        if let b64 = Data(base64Encoded: text) { return [UInt8](b64) }
        return bytes
    }
}
