import Crypto
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard
@testable import BenefitCard

/// Someone with a USB reader and raw APDUs (`APDUScript`) against a card: every attempt to
/// lower a figure or plant a record is refused by the card itself, and EF.USAGE stays as it was.
@Suite struct AttackerTests {
    static let select = "00 A4 04 00 08 F14855494D494E01 00 -> 9000"

    /// Plays `before`, reads the challenge the card drew (if the script asked for one), then
    /// plays what `after` builds from it. Returns the last answer.
    func attack(_ emulator: CardEmulator, _ before: String, then after: ([UInt8]) throws -> String) throws -> [APDUScript.Outcome] {
        let channel = EmulatedChannel(emulator)
        let first = try APDUScript(before).check(raw: channel)
        let challenge = first.last { $0.step.command.count == 5 && $0.step.command[1] == 0x84 }?.response.data ?? [UInt8](repeating: 0, count: 16)
        return first + (try APDUScript(after(challenge)).run(raw: channel))
    }

    func update(_ object: [UInt8]) -> String { "00 D6 83 00 \(String(format: "%02X", object.count)) \(object.hexString) 00" }
    func pso(_ certificate: [UInt8]) -> String { "00 2A 00 BE \(String(format: "%02X", certificate.count)) \(certificate.hexString)" }

    func expectUntouched(_ e: CardEmulator, _ before: [UInt8]?, _ what: String) {
        #expect(e.file(3) == before, "\(what): EF.USAGE changed")
    }

    @Test func rewritingALowerFigureWithoutACertificate() throws {
        let e = Vectors.emulator(Fx.card17)
        let before = e.file(3)
        let mine = Curve25519.Signing.PrivateKey()
        let out = try attack(e, "\(Self.select)\n00 84 00 00 10 -> 9000") { ch in
            try update(Fx.record(4, used: 0, challenge: ch, signer: mine))
        }
        #expect(out.last?.response.status == StatusWord(0x6982))
        expectUntouched(e, before, "no certificate")
    }

    @Test func aRealCertificateWithoutItsKey() throws {
        // Device certificates are public (every kiosk sends its own): without the device key it is useless.
        let e = Vectors.emulator(Fx.card17)
        let before = e.file(3)
        let script = "\(Self.select)\n\(pso(Vectors.certificate("KSK-TEST-0001").bytes)) -> 9000\n00 84 00 00 10 -> 9000"
        let out = try attack(e, script) { ch in try update(Fx.record(4, used: 0, challenge: ch, signer: Curve25519.Signing.PrivateKey())) }
        #expect(out.last?.response.status == StatusWord(0x6982))
        expectUntouched(e, before, "certificate without its key")
    }

    @Test func aCertifiedDeviceCannotLowerOrGoBack() throws {
        // Even with a stolen device key and certificate: the card never lets a figure go down or time go back.
        let cert = pso(Vectors.certificate("KSK-TEST-0001").bytes)
        for (used, at, sw) in [(Int64(0), Fx.now, 0x6985), (11999, Fx.now, 0x6985), (30000, "2026-10-08T01:14:59Z", 0x6982)]
            as [(Int64, String, UInt16)] {
            let e = Vectors.emulator(Fx.card17)
            let before = e.file(3)
            let out = try attack(e, "\(Self.select)\n\(cert) -> 9000\n00 84 00 00 10 -> 9000") { ch in
                try update(Fx.record(4, used: used, at: at, challenge: ch))
            }
            #expect(out.last?.response.status == StatusWord(sw), "used \(used) at \(at)")
            expectUntouched(e, before, "lower figure \(used) at \(at)")
        }
    }

    @Test func aCertifiedDeviceCannotTurnTheClockBack() throws {
        let cert = pso(Vectors.certificate("KSK-TEST-0001").bytes)
        let e = Vectors.emulator(Fx.card17)
        let first = try attack(e, "\(Self.select)\n\(cert) -> 9000\n00 84 00 00 10 -> 9000") { ch in try update(Fx.record(4, challenge: ch)) }
        #expect(first.last?.response.status == .success && first.last?.response.data.count == 64)
        let written = e.file(3)
        // A day earlier (still within the certificate), the same figure: 69 85; and an earlier period never passes.
        let out = try attack(e, "\(Self.select)\n\(cert) -> 9000\n00 84 00 00 10 -> 9000") { ch in
            try update(Fx.record(5, at: "2026-11-21T03:00:00Z", challenge: ch))
        }
        #expect(out.last?.response.status == StatusWord(0x6985))
        expectUntouched(e, written, "earlier DF45")
    }

    @Test func replayingAnotherCardsRecord() throws {
        // …0017's record of the vectors, written onto the new card …0033 (72 00), even with the same challenge.
        let w = Vectors.writeVectors.write
        let e = Vectors.emulator("3307820000000033")
        e.setFixedChallenge(try Fx.hex(w.challenge))
        let before = e.file(3)
        let out = try attack(e, "\(Self.select)\n\(pso(Fx.hex(w.certificate))) -> 9000\n00 84 00 00 10 -> 9000") { _ in
            try update(Fx.hex(w.usage_object))
        }
        #expect(out.last?.response.status == StatusWord(0x6982))
        expectUntouched(e, before, "another card's record")
        // And on …0017 itself, the same record replayed after it was written: its sequence is used up.
        let e17 = Vectors.emulator(Fx.card17)
        e17.setFixedChallenge(try Fx.hex(w.challenge))
        let again = try APDUScript(w.apdus.map { $0 + " -> 9000" }.joined(separator: "\n")).check(raw: EmulatedChannel(e17))
        #expect(again.last?.response.data.hexString == w.ack)
        let written = e17.file(3)
        let replay = try APDUScript(w.apdus.dropLast().joined(separator: "\n") + "\n" + (w.apdus.last ?? "") + " -> 6985").check(raw: EmulatedChannel(e17))
        #expect(replay.count == 4)
        expectUntouched(e17, written, "replayed record")
    }

    @Test func expiredCertificates() throws {
        let ca = Vectors.deviceCA
        let key = Vectors.device("KSK-TEST-0001")
        // Ran out before the card's last write (2026-10-08): PSO refuses it.
        let old = try DeviceCertificate.issue(caKeyID: ca.id, caKey: ca.private, deviceID: "KSK-TEST-0001",
                                              devicePublicKey: Array(key.public.rawRepresentation),
                                              validFrom: Fx.cardDate("20260101"), validThrough: Fx.cardDate("20261007"))
        let e = Vectors.emulator(Fx.card17)
        let before = e.file(3)
        let out = try attack(e, "\(Self.select)\n\(pso(old.encoded)) -> 6982\n00 84 00 00 10 -> 9000") { ch in
            try update(Fx.record(4, at: "2026-10-07T01:00:00Z", challenge: ch))
        }
        #expect(out.last?.response.status == StatusWord(0x6982))
        expectUntouched(e, before, "expired certificate")
        // Still valid at the card's last write, but not at the DF45 it writes now: the validity row.
        let short = try DeviceCertificate.issue(caKeyID: ca.id, caKey: ca.private, deviceID: "KSK-TEST-0001",
                                                devicePublicKey: Array(key.public.rawRepresentation),
                                                validFrom: Fx.cardDate("20261001"), validThrough: Fx.cardDate("20261015"))
        let e2 = Vectors.emulator(Fx.card17)
        let out2 = try attack(e2, "\(Self.select)\n\(pso(short.encoded)) -> 9000\n00 84 00 00 10 -> 9000") { ch in
            try update(Fx.record(4, challenge: ch))
        }
        #expect(out2.last?.response.status == StatusWord(0x6982))
        expectUntouched(e2, before, "write past the certificate")
    }

    @Test func aForeignCACertificate() throws {
        let rogue = try Fx.rogueCA
        let key = Vectors.device("KSK-TEST-0001")
        for caName in [rogue.id, Vectors.deviceCA.id] {
            let cert = try DeviceCertificate.issue(caKeyID: caName, caKey: rogue.key, deviceID: "KSK-TEST-0001",
                                                   devicePublicKey: Array(key.public.rawRepresentation),
                                                   validFrom: Fx.cardDate("20261110"), validThrough: Fx.cardDate("20270207"))
            let e = Vectors.emulator(Fx.card17)
            let before = e.file(3)
            let out = try attack(e, "\(Self.select)\n\(pso(cert.encoded)) -> 6982\n00 84 00 00 10 -> 9000") { ch in
                try update(Fx.record(4, used: 0, challenge: ch))
            }
            #expect(out.last?.response.status == StatusWord(0x6982), "CA named \(caName)")
            expectUntouched(e, before, "foreign CA \(caName)")
        }
    }

    @Test func noChallengeNoWrite() throws {
        // A record with a guessed DF48, and no GET CHALLENGE in the session.
        let e = Vectors.emulator(Fx.card17)
        let before = e.file(3)
        let out = try attack(e, "\(Self.select)\n\(pso(Vectors.certificate("KSK-TEST-0001").bytes)) -> 9000") { _ in
            try update(Fx.record(4, used: 0, challenge: Array(repeating: 0, count: 16)))
        }
        #expect(out.last?.response.status == StatusWord(0x6982))
        expectUntouched(e, before, "no challenge")
    }
}
