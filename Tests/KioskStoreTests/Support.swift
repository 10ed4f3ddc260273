import Crypto
import Foundation
import KioskCore
import KioskStore
import TestVectors

/// Test fixtures: the spec's vectors and keys, fresh temporary folders, snapshot building.
enum Fixture {
    static func url(_ name: String) -> URL { Vectors.url(name) }
    static var keys: [String: Any] { Vectors.keys }
    static func pair(_ path: [String]) -> [String: String] {
        var o: Any = keys
        for p in path { o = (o as! [String: Any])[p]! }
        return o as! [String: String]
    }
    static let authority = try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(base64Encoded: pair(["authority"])["private_seed"]!)!)
    static let authorities = ["330782-auth-test": authority.publicKey]
    static let issuerKey = pair(["issuer"])["public_key"]!
    static let salt = Data(base64Encoded: keys["id_salt"] as! String)!
    static let now = Timestamp.date("2026-11-22T03:00:00Z")!

    /// The vector snapshot's lines as objects.
    static let vectorLines: [[String: Any]] = String(decoding: Vectors.data("snapshot-small.jsonl"), as: UTF8.self)
        .split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    static var vectorHeader: [String: Any] { vectorLines.first! }
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

    /// A provisioned device in a fresh folder.
    static func device(id: String = "KSK-TEST-0001", seed: String? = pair(["devices", "KSK-TEST-0001"])["private_seed"]) throws -> Device {
        try Device.provision(stateDir: tempDir(), config: DeviceConfig(
            deviceID: id, institution: "330782-H01", profile: .hospital, issuerKeys: ["330782-issuer-test": issuerKey],
            authorityKeys: ["330782-auth-test": pair(["authority"])["public_key"]!], hubURL: "http://127.0.0.1:9", printer: "file:/tmp",
            provisionedAt: "2026-11-22T00:00:00Z"), seed: seed.flatMap { Data(base64Encoded: $0) }, replaceKey: false)
    }
}
