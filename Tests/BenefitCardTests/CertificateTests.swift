import Crypto
import Foundation
import SmartCard
import TestVectors
import Testing
@testable import BenefitCard

@Suite struct DeviceCertificateTests {
    static let devices = ["KSK-TEST-0001", "KSK-TEST-0002", "KSK-TEST-0003"]

    @Test(arguments: devices)
    func vectorCertificatesParseVerifyAndReissueByteForByte(_ id: String) throws {
        let v = Vectors.certificate(id)
        let c = try DeviceCertificate(bytes: v.bytes)
        #expect(c.encoded == v.bytes && v.bytes.count == 166)
        #expect(c.caKeyID == Vectors.deviceCA.id && c.deviceID == id)
        #expect(c.devicePublicKey == Array(Vectors.device(id).public.rawRepresentation))
        #expect(c.validFrom.compact == v.validFrom && c.validThrough.compact == v.validThrough)
        #expect(c.verify(caKeys: Fx.caKeys))
        #expect(!c.verify(caKeys: [:]))
        #expect(!c.verify(caKeys: [Vectors.deviceCA.id: Vectors.issuer.key]))   // the right name, another key
        // Issued again with the test CA's seed: the same bytes (Ed25519 signatures are deterministic).
        let again = try DeviceCertificate.issue(caKeyID: Vectors.deviceCA.id, caKey: Vectors.deviceCA.private, deviceID: id,
                                                devicePublicKey: c.devicePublicKey, validFrom: c.validFrom, validThrough: c.validThrough)
        #expect(again == c && again.encoded == v.bytes)
    }

    @Test func validityIsInChinaStandardTime() throws {
        let c = try Fx.certificate()   // 20261110 … 20270207
        #expect(!c.isValid(at: try Fx.date("2026-11-09T15:59:59Z")))
        #expect(c.isValid(at: try Fx.date("2026-11-09T16:00:00Z")))
        #expect(c.isValid(at: try Fx.date("2027-02-07T15:59:59Z")))
        #expect(!c.isValid(at: try Fx.date("2027-02-07T16:00:00Z")))
        #expect(c.notBefore == (try Fx.date("2026-11-09T16:00:00Z")))
        #expect(c.notAfter == (try Fx.date("2027-02-07T16:00:00Z")))
    }

    @Test func aForeignCAIsNotTrusted() throws {
        let rogue = try Fx.rogueCA
        let c = try DeviceCertificate.issue(caKeyID: rogue.id, caKey: rogue.key, deviceID: "KSK-TEST-0001",
                                            devicePublicKey: Array(Vectors.device("KSK-TEST-0001").public.rawRepresentation),
                                            validFrom: Fx.cardDate("20261110"), validThrough: Fx.cardDate("20270207"))
        #expect(c.verify(caKeys: [rogue.id: rogue.key.publicKey]))
        #expect(!c.verify(caKeys: Fx.caKeys))
        // Claiming the real CA's name does not help.
        let forged = try DeviceCertificate.issue(caKeyID: Vectors.deviceCA.id, caKey: rogue.key, deviceID: "KSK-TEST-0001",
                                                 devicePublicKey: c.devicePublicKey, validFrom: c.validFrom, validThrough: c.validThrough)
        #expect(!forged.verify(caKeys: Fx.caKeys))
    }

    @Test func strictParse() throws {
        let good = Vectors.certificate("KSK-TEST-0001").bytes
        #expect(throws: DeviceCertificateError.trailingBytes(1)) { try DeviceCertificate(bytes: good + [0]) }
        #expect(throws: DeviceCertificateError.self) { try DeviceCertificate(bytes: Array(good.dropLast())) }
        #expect(throws: DeviceCertificateError.self) { try DeviceCertificate(bytes: []) }
        let c = try DeviceCertificate(bytes: good)
        func rebuilt(_ objects: [TLV]) -> [UInt8] { TLV(tag: 0x7F21, value: objects.flatMap(\.encoded)).encoded }
        var parts = [TLV(tag: 0x42, value: Array(c.caKeyID.utf8)), TLV(tag: 0x5F20, value: Array(c.deviceID.utf8)),
                     TLV(tag: 0x86, value: c.devicePublicKey), TLV(tag: 0x5F25, value: Array("20261110".utf8)),
                     TLV(tag: 0x5F24, value: Array("20270207".utf8)), TLV(tag: 0x5F37, value: c.signature)]
        #expect(rebuilt(parts) == good)
        var swapped = parts
        swapped.swapAt(3, 4)
        #expect(throws: DeviceCertificateError.self) { try DeviceCertificate(bytes: rebuilt(swapped)) }
        for (i, bad) in [(2, [UInt8](repeating: 1, count: 31)), (3, Array("20261131".utf8)), (5, [UInt8](repeating: 0, count: 63)),
                         (0, []), (1, [UInt8](repeating: 0x41, count: 33))] {
            var p = parts
            p[i] = TLV(tag: p[i].tag, value: bad)
            #expect(throws: DeviceCertificateError.self, "object \(i)") { try DeviceCertificate(bytes: rebuilt(p)) }
        }
        parts.append(TLV(tag: 0x5F38, value: [1]))
        #expect(throws: DeviceCertificateError.self) { try DeviceCertificate(bytes: rebuilt(parts)) }
        #expect(throws: DeviceCertificateError.notACertificate(found: 0x7F4E)) { try DeviceCertificate(bytes: TLV(tag: 0x7F4E, value: []).encoded) }
    }

    @Test func issueChecksItsFields() throws {
        let key = Array(Vectors.device("KSK-TEST-0001").public.rawRepresentation)
        let from = try Fx.cardDate("20261110"), through = try Fx.cardDate("20270207")
        let ca = Vectors.deviceCA
        #expect(throws: DeviceCertificateError.validityReversed(from: "20270207", through: "20261110")) {
            try DeviceCertificate.issue(caKeyID: ca.id, caKey: ca.private, deviceID: "D", devicePublicKey: key, validFrom: through, validThrough: from)
        }
        #expect(throws: DeviceCertificateError.self) {
            try DeviceCertificate.issue(caKeyID: ca.id, caKey: ca.private, deviceID: "", devicePublicKey: key, validFrom: from, validThrough: through)
        }
        #expect(throws: DeviceCertificateError.self) {
            try DeviceCertificate.issue(caKeyID: ca.id, caKey: ca.private, deviceID: "D", devicePublicKey: [1], validFrom: from, validThrough: through)
        }
        // The largest certificate (32-byte identifiers) still fits one short APDU: 196 bytes.
        let big = try DeviceCertificate.issue(caKeyID: String(repeating: "C", count: 32), caKey: ca.private,
                                              deviceID: String(repeating: "D", count: 32), devicePublicKey: key, validFrom: from, validThrough: through)
        #expect(big.encoded.count == 196)
    }
}
