import KioskProtocol
import BenefitCard
import Crypto
import Foundation
import KioskCore
import KioskStore
import TestVectors
import Testing

/// Test fixtures: the spec's vectors and keys, fresh temporary folders, snapshot building.
enum Fixture {
    static func url(_ name: String) -> URL { Vectors.url(name) }
    static var keys: [String: Any] { Vectors.keys }
    /// An object of `test-keys.json` by its path, e.g. `["devices", "KSK-TEST-0001"]`; throws
    /// when the path is not there.
    static func keyPair(_ path: [String]) throws -> [String: String] {
        var o: [String: Any] = keys
        for p in path.dropLast() { o = try Vectors.entry(o, p) }
        return try Vectors.entry(o, path.last ?? "")
    }
    /// `keyPair` for the static fixtures below (test-keys.json is bundled: always there).
    static func pair(_ path: [String]) -> [String: String] { Vectors.bundled { try keyPair(path) } }
    static let authority = Vectors.bundled { try Vectors.loadPrivateKey(try Vectors.entry(pair(["authority"]), "private_seed")) }
    static let authorities = ["330782-auth-test": authority.publicKey]
    static let issuerKey = Vectors.bundled { try Vectors.entry(pair(["issuer"]), "public_key") }
    static let now = Date(timeIntervalSince1970: 1_795_316_400)   // 2026-11-22T03:00:00Z

    /// The vector snapshot's lines as objects.
    static var vectorLines: [[String: Any]] { Vectors.bundled {
        try String(decoding: Vectors.loadData("snapshot-small.jsonl"), as: UTF8.self).split(separator: "\n").map {
            guard let line = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] else {
                throw Vectors.FixtureError("snapshot-small.jsonl: a line that is not an object")
            }
            return line
        }
    } }
    static var vectorHeader: [String: Any] {
        Vectors.bundled {
            guard let header = vectorLines.first else { throw Vectors.FixtureError("snapshot-small.jsonl is empty") }
            return header
        }
    }
    static var vectorRecords: [[String: Any]] { Array(vectorLines.dropFirst().dropLast()) }

    static func tempDir() -> URL {
        Scratch.folder("store")
    }

    /// A signed snapshot file built from a header and records.
    static func snapshot(header: [String: Any] = vectorHeader, records: [[String: Any]] = vectorRecords,
                         key: Curve25519.Signing.PrivateKey = authority, raw: [String] = [], recordsOverride: Int? = nil) throws -> URL {
        let u = tempDir().appendingPathComponent("snapshot.jsonl")
        let w = try SnapshotWriter(url: u, header: header, authorityKey: key)
        for r in records { try w.add(r) }
        for r in raw { try w.addRaw(r) }
        try w.finish(recordsOverride: recordsOverride)
        return u
    }

    /// A provisioned device in a fresh folder, with its test certificate installed (unless
    /// `certified` is false or it has no test certificate).
    static func device(id: String = "KSK-TEST-0001", seed: String? = pair(["devices", "KSK-TEST-0001"])["private_seed"],
                       certified: Bool = true, institution: String = "330782-H01") throws -> Device {
        let dir = tempDir()
        let d = try Device.provision(stateDir: dir, config: DeviceConfig(
            deviceID: id, institution: institution, profile: .hospital, issuerKeys: ["330782-issuer-test": issuerKey],
            authorityKeys: ["330782-auth-test": try Vectors.entry(keyPair(["authority"]), "public_key")], deviceCAKeys: TestDevices.caKeys,
            hubURL: "http://127.0.0.1:9", printer: "file:/tmp",
            provisionedAt: "2026-11-22T00:00:00Z"), seed: seed.flatMap { Data(base64Encoded: $0) }, replaceKey: false)
        var cert = TestDevices.certificate(id)
        if cert.isEmpty, certified {
            // Not a vector device: the test CA certifies it (90 days from 2026-12-01).
            let ca = Vectors.deviceCA.private
            cert = try DeviceCertificate.issue(caKeyID: TestDevices.ca.id, caKey: ca, deviceID: id,
                                               devicePublicKey: [UInt8](d.signingKey.publicKey.rawRepresentation),
                                               validFrom: try #require(CardDate("20261201")), validThrough: try #require(CardDate("20270228"))).encoded
        }
        guard certified, !cert.isEmpty else { return d }
        try d.installCertificate(cert, now: now)
        return try Device(stateDir: dir)
    }
}
