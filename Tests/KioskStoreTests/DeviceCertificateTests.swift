import KioskProtocol
import BenefitCard
import Crypto
import Foundation
import KioskCore
import KioskStore
import TestVectors
import Testing

/// Provisioning with a device certificate (card spec §5.2, sync spec §5): the key is made on
/// the device; a certificate is installed only when it is this device's and sound.
@Suite struct DeviceCertificateTests {
    static let ca = Vectors.deviceCA.private   // TestDevices.ca's key (test-keys.json device_ca)

    func issue(_ d: Device, id: String? = nil, key: [UInt8]? = nil, ca: Curve25519.Signing.PrivateKey = ca, caID: String = TestDevices.ca.id,
               from: String = "20261110", through: String = "20270207") throws -> [UInt8] {
        try DeviceCertificate.issue(caKeyID: caID, caKey: ca, deviceID: id ?? d.config.deviceID,
                                    devicePublicKey: key ?? [UInt8](d.signingKey.publicKey.rawRepresentation),
                                    validFrom: try #require(CardDate(from)), validThrough: try #require(CardDate(through))).encoded
    }

    @Test func aDeviceMakesItsOwnKeyAndTakesItsCertificate() throws {
        let d = try Fixture.device(id: "KSK-LAB-0001", seed: nil, certified: false)
        #expect(d.certificate == nil)
        let cert = try d.installCertificate(try issue(d), now: Fixture.now)
        #expect(cert.deviceID == "KSK-LAB-0001")
        let again = try Device(stateDir: d.stateDir)
        #expect(again.certificate == cert)
        // The vector certificate of KSK-TEST-0001 is byte for byte what the reference CA issues.
        let t = try Fixture.device()
        #expect(try issue(t) == TestDevices.certificate("KSK-TEST-0001"))
    }

    @Test func unsoundCertificatesAreRefused() throws {
        let d = try Fixture.device(id: "KSK-LAB-0002", seed: nil, certified: false)
        let rogue = Curve25519.Signing.PrivateKey()
        let cases: [(String, [UInt8])] = [
            ("another device", try issue(d, id: "KSK-LAB-0003")),
            ("another key", try issue(d, key: [UInt8](Curve25519.Signing.PrivateKey().publicKey.rawRepresentation))),
            ("a foreign CA under the trusted id", try issue(d, ca: rogue)),
            ("an unknown CA id", try issue(d, ca: rogue, caID: "330782-device-ca-rogue")),
            ("91 days", try issue(d, from: "20261110", through: "20270208")),
            ("ran out", try issue(d, from: "20260801", through: "20261029")),
            ("not a certificate", [0x7F, 0x21, 0x01, 0x00]),
        ]
        for (what, bytes) in cases {
            #expect(throws: DeviceError.self, "\(what)") { try d.installCertificate(bytes, now: Fixture.now) }
        }
        #expect(try Device(stateDir: d.stateDir).certificate == nil)
        // 90 days, both ends counted, is the most.
        #expect(try d.installCertificate(try issue(d, from: "20261110", through: "20270207"), now: Fixture.now).deviceID == "KSK-LAB-0002")
    }

    @Test func deviceIdentifiersFitTheReceipt() throws {
        for bad in ["KSK-330782-HOSPITAL-0001", "ksk-1", "KSK 1", ""] {
            #expect(throws: DeviceError.self, "\(bad)") { _ = try Fixture.device(id: bad, seed: nil, certified: false) }
        }
    }

    /// Sync spec §5: a kiosk grants nothing without a valid certificate; it warns 30 days
    /// before it runs out.
    @Test func retirementAndTheThirtyDayWarning() throws {
        let d = try Fixture.device()
        let k = Kiosk(device: d, clock: .fixed(Fixture.now))
        #expect(k.retirement(ownDeviceStatus: "active", snapshotInstalled: true, now: Fixture.now) == nil)
        #expect(k.retirement(ownDeviceStatus: "retired", snapshotInstalled: true, now: Fixture.now) != nil)
        #expect(k.retirement(ownDeviceStatus: nil, snapshotInstalled: true, now: Fixture.now) != nil)
        #expect(k.retirement(ownDeviceStatus: nil, snapshotInstalled: false, now: Fixture.now) == nil)
        #expect(k.retirement(ownDeviceStatus: "active", snapshotInstalled: true, now: try #require(Timestamp.date("2027-02-07T16:00:00Z"))) != nil)
        #expect(k.retirement(ownDeviceStatus: "active", snapshotInstalled: true, now: try #require(Timestamp.date("2026-11-09T15:59:59Z"))) != nil)
        #expect(k.certificateWarning(now: Fixture.now) == nil)
        #expect(k.certificateWarning(now: try #require(Timestamp.date("2027-01-10T00:00:00Z")))?.contains("2027-02-07") == true)
        let none = Kiosk(device: try Fixture.device(id: "KSK-LAB-0004", seed: nil, certified: false), clock: .fixed(Fixture.now))
        #expect(none.retirement(ownDeviceStatus: "active", snapshotInstalled: true, now: Fixture.now) != nil)
    }
}

/// Issue 8: the test hooks are compiled into debug builds only (package.sh also refuses a
/// release binary that holds their names). The tests run a debug build: the hooks are there.
@Suite struct TestHookTests {
    @Test func testHooksAreADebugBuildThing() throws {
        #if DEBUG
        #expect(KioskClock.testHooksCompiledIn)
        #else
        #expect(!KioskClock.testHooksCompiledIn)
        #endif
    }
}
