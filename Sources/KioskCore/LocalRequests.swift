import Foundation
import KioskProtocol

/// A legal-aid application as `POST /api/legal-aid` takes it: a JSON object of at most 1 KiB
/// with `matter` (1–64 bytes of a–z, 0–9, `_`) and optionally `phone` (1–20 bytes of 0–9,
/// `+`, `-`, space) and nothing else; decoded strictly (`StrictDecoder`).
public struct LegalAidRequest: Decodable, Equatable, Sendable {
    /// The matter's code.
    public var matter: String
    /// A contact phone number, if the applicant gave one.
    public var phone: String?

    /// The largest body read.
    public static let maximumBodyBytes = 1024

    enum CodingKeys: String, CodingKey { case matter, phone }

    /// An application of `matter`, with `phone` if given.
    public init(matter: String, phone: String? = nil) { self.matter = matter; self.phone = phone }

    /// Decodes and checks the bytes of each field.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let matter = try? c.decode(String.self, forKey: .matter), (1...64).contains(matter.utf8.count),
              matter.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }) else {
            throw StrictDecoder.Failure("matter must be 1 to 64 bytes of a-z, 0-9 and _")
        }
        self.matter = matter
        if c.contains(.phone), try !c.decodeNil(forKey: .phone) {
            guard let p = try? c.decode(String.self, forKey: .phone) else { throw StrictDecoder.Failure("phone must be a string") }
            guard (1...20).contains(p.utf8.count), p.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x20 }) else {
                throw StrictDecoder.Failure("phone must be 1 to 20 bytes of 0-9, +, - and spaces")
            }
            phone = p
        }
    }

    /// Reads a body.
    /// - Throws: `StrictDecoder.Failure` saying why it is refused.
    public static func parse(_ body: [UInt8]) throws(StrictDecoder.Failure) -> LegalAidRequest {
        guard body.count <= maximumBodyBytes else { throw StrictDecoder.Failure("the body is \(body.count) bytes; at most \(maximumBodyBytes)") }
        return try StrictDecoder.decode(LegalAidRequest.self, from: body, keys: ["matter", "phone"])
    }
}

/// The screen's 确认 or 取消 of a pre-settlement: `{"confirmation": N}`, N the number of the
/// pre-settlement the patient saw (a press meant for earlier figures is refused).
public struct ConfirmationRequest: Decodable, Equatable, Sendable {
    /// The pre-settlement's number, at least 1.
    public var confirmation: UInt64

    enum CodingKeys: String, CodingKey { case confirmation }

    /// Decodes and checks the number.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let n = try? c.decode(Int64.self, forKey: .confirmation), n > 0 else {
            throw StrictDecoder.Failure("the body is {\"confirmation\": N}, N the pre-settlement's number on the screen")
        }
        confirmation = UInt64(n)
    }

    /// Reads a body (at most 256 bytes, checked by the caller).
    /// - Throws: `StrictDecoder.Failure`.
    public static func parse(_ body: [UInt8]) throws(StrictDecoder.Failure) -> ConfirmationRequest {
        do { return try StrictDecoder.decode(ConfirmationRequest.self, from: body, keys: ["confirmation"]) } catch {
            throw StrictDecoder.Failure("the body is {\"confirmation\": N}, N the pre-settlement's number on the screen")
        }
    }
}
