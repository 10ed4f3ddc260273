import Crypto
import Foundation
import SmartCard

/// The test keys of `test-keys.json` (TEST KEYS ONLY) in the form provisioning takes them
/// (`KEY_ID: BASE64`), and the test devices' certificates. The keys themselves come from
/// `Vectors` (`Vectors.deviceCA` for the CA's private key).
public enum TestDevices {
    /// The device CA: its key id and base64 public key, as `--device-ca-key` takes them.
    public static var ca: (id: String, publicKey: String) {
        (Vectors.deviceCA.id, Vectors.deviceCA.public.rawRepresentation.base64EncodedString())
    }

    /// The device-CA keys as provisioning takes them.
    public static var caKeys: [String: String] { [ca.id: ca.publicKey] }

    /// A test device's certificate (7F21), as `test-keys.json` gives it; empty for a device
    /// the vectors do not certify.
    public static func certificate(_ deviceID: String) -> [UInt8] {
        (try? Vectors.deviceCertificate(deviceID))?.bytes ?? []
    }

    /// The issuer and authority keys as provisioning takes them.
    public static var issuerKeys: [String: String] { [Vectors.issuer.id: Vectors.issuer.key.rawRepresentation.base64EncodedString()] }
    public static var authorityKeys: [String: String] {
        let a = Vectors.keys["authority"] as? [String: String] ?? [:]
        return [a["key_id"] ?? "": a["public_key"] ?? ""]
    }
}
