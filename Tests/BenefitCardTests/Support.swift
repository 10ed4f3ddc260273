import Crypto
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard
@testable import BenefitCard

/// Small helpers of the BenefitCard tests (no `!`: a broken fixture fails the test, not the run).
enum Fx {
    static let card17 = "3307820000000017"
    static let now = "2026-11-22T03:00:00Z"

    struct Missing: Error, CustomStringConvertible { var description: String }

    static func hex(_ s: String?) throws -> [UInt8] {
        guard let s, let b = [UInt8](hex: s) else { throw Missing(description: "not hex: \(s ?? "nil")") }
        return b
    }

    static func date(_ s: String) throws -> Date {
        guard let d = ISO8601DateFormatter().date(from: s) else { throw Missing(description: "not a date: \(s)") }
        return d
    }

    static func cardDate(_ s: String) throws -> CardDate {
        guard let d = CardDate(s) else { throw Missing(description: "not a card date: \(s)") }
        return d
    }

    /// The card of `cards.json`, holding `usage` (hex) in EF.USAGE when given.
    static func emulator(_ number: String, usage: String? = nil, _ m: Misbehaviour = Misbehaviour()) throws -> CardEmulator {
        var d = Vectors.description(number)
        if let usage { d.files.usage = usage }
        return try CardEmulator(description: d, misbehaviour: m)
    }

    static func cardPublicKey(_ number: String) throws -> [UInt8] {
        guard let v = Vectors.cards.first(where: { $0.card_number == number }), let k = Data(base64Encoded: v.card_public_key) else {
            throw Missing(description: "card \(number)")
        }
        return Array(k)
    }

    static var caKeys: [String: Curve25519.Signing.PublicKey] { [Vectors.deviceCA.id: Vectors.deviceCA.public] }

    static func certificate(_ device: String = "KSK-TEST-0001") throws -> DeviceCertificate {
        try DeviceCertificate(bytes: Vectors.certificate(device).bytes)
    }

    static var rogueCA: (id: String, key: Curve25519.Signing.PrivateKey) {
        get throws {
            let r = Vectors.writeVectors.rogue_ca
            guard let seed = r.private_seed, let raw = Data(base64Encoded: seed) else { throw Missing(description: "rogue CA seed") }
            return (r.key_id, try Curve25519.Signing.PrivateKey(rawRepresentation: raw))
        }
    }

    /// A record for …0017's card as KSK-TEST-0001 would write it.
    static func record(_ sequence: UInt32, used: Int64 = 30000, program: String = "HM-SUBSIDY", period: String = "2026",
                       at: String = now, challenge: [UInt8], device: String = "KSK-TEST-0001",
                       signer: Curve25519.Signing.PrivateKey? = nil, card: String = card17) throws -> [UInt8] {
        try UsageRecord.encode(cardNumber: card, period: period, sequence: sequence, terminalID: device, writtenAt: date(at),
                               entries: [.init(program: program, usedFen: used)], challenge: challenge,
                               signer: signer ?? Vectors.device(device).private)
    }
}
