import Foundation
import SmartCard

/// The test devices' certificates and the device CA of `test-keys.json` (TEST KEYS ONLY).
public enum TestDevices {
    static var keys: [String: Any] { Vectors.keys }

    /// The device CA: key id, base64 public key, base64 private seed.
    public static var ca: (id: String, publicKey: String, seed: String) {
        let c = keys["device_ca"] as? [String: String] ?? [:]
        return (c["key_id"] ?? "", c["public_key"] ?? "", c["private_seed"] ?? "")
    }

    /// The device-CA keys as provisioning takes them (`KEY_ID: BASE64`).
    public static var caKeys: [String: String] { [ca.id: ca.publicKey] }

    /// A test device's certificate (7F21), as `test-keys.json` gives it.
    public static func certificate(_ deviceID: String) -> [UInt8] {
        let d = (keys["devices"] as? [String: Any])?[deviceID] as? [String: String] ?? [:]
        return [UInt8](hex: d["certificate"] ?? "") ?? []
    }

    /// The issuer and authority keys as provisioning takes them.
    public static var issuerKeys: [String: String] {
        let i = keys["issuer"] as? [String: String] ?? [:]
        return [i["key_id"] ?? "": i["public_key"] ?? ""]
    }
    public static var authorityKeys: [String: String] {
        let a = keys["authority"] as? [String: String] ?? [:]
        return [a["key_id"] ?? "": a["public_key"] ?? ""]
    }
}
