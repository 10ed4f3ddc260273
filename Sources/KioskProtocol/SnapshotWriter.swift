import Crypto
import Foundation

/// Writes a signed snapshot (snapshot spec v2 §1) as a stream: the generator for tests,
/// benchmarks and training. Constant memory whatever the number of records. It writes the
/// header and records it is given (persons keyed by `person_ref`, `format_version` 2: see
/// `personRef(using:)`); it checks none of the spec's rules, so tests can break them.
public final class SnapshotWriter {
    let handle: FileHandle
    let key: Curve25519.Signing.PrivateKey
    var hasher = SHA256()
    var records = 0
    var buffer = Data()

    /// Starts the file with its header.
    public init(url: URL, header: [String: Any], authorityKey: Curve25519.Signing.PrivateKey) throws {
        FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: 0)
        key = authorityKey
        var h = header
        h["type"] = "header"
        try line(h, counted: false)
    }

    /// One record line.
    public func add(_ record: [String: Any]) throws { try line(record, counted: true) }

    /// A line given as text (for tests that need exact or malformed bytes).
    public func addRaw(_ text: String, counted: Bool = true) throws {
        let data = Data((text + "\n").utf8)
        hasher.update(data: data)
        buffer.append(data)
        if counted { records += 1 }
        try flushIfNeeded()
    }

    func line(_ o: [String: Any], counted: Bool) throws {
        let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]) + Data([0x0A])
        hasher.update(data: data)
        buffer.append(data)
        if counted { records += 1 }
        try flushIfNeeded()
    }

    func flushIfNeeded(force: Bool = false) throws {
        if force || buffer.count > 1 << 20 {
            try handle.write(contentsOf: buffer)
            buffer.removeAll(keepingCapacity: true)
        }
    }

    /// Writes the trailer (records, sha256, signature) and closes the file.
    /// `recordsOverride` writes a wrong count on purpose (tests).
    public func finish(recordsOverride: Int? = nil) throws {
        let digest = Data(hasher.finalize())
        let signature = try key.signature(for: digest)
        let trailer: [String: Any] = ["type": "trailer", "records": recordsOverride ?? records,
                                      "sha256": Hex.encode(digest),
                                      "signature": signature.base64EncodedString()]
        buffer.append(try JSONSerialization.data(withJSONObject: trailer, options: [.sortedKeys]) + Data([0x0A]))
        try flushIfNeeded(force: true)
        try handle.close()
    }

    /// A new `person_ref` (snapshot spec v2 §1, card spec `DF2A`): 16 random bytes from
    /// `rng` as 32 lowercase hex digits. Never derived from an identity number: a person's
    /// reference is drawn once, by whoever registers the person, and kept.
    public static func personRef<R: RandomNumberGenerator>(using rng: inout R) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in stride(from: 0, to: 16, by: 8) {
            let v = rng.next()
            for j in 0..<8 { bytes[i + j] = UInt8(truncatingIfNeeded: v >> (8 * j)) }
        }
        return Hex.encode(bytes)
    }
}
