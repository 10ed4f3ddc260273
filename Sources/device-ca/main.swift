import KioskProtocol
import ArgumentParser
import BenefitCard
import Crypto
import Foundation
import SmartCard

/// The small reference device certification authority (card spec §5.2) for labs, tests and
/// the demo: makes a CA key and issues device certificates from a CA key file. In
/// production the platform's publisher issues them (sync spec §5).
struct DeviceCA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device-ca",
        abstract: "Reference device CA: make a CA key, issue device certificates (card spec §5.2). Labs, tests and demos only.",
        subcommands: [Keygen.self, Issue.self, Show.self])
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a CA key: a base64 Ed25519 seed in a 0600 file; prints the public key.")
    @Option(help: "Where to write the seed (refused if it exists).") var out: String
    func run() throws {
        guard !FileManager.default.fileExists(atPath: out) else { throw ValidationError("\(out) exists; not overwritten") }
        let key = Curve25519.Signing.PrivateKey()
        let fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot write \(out): \(String(cString: strerror(errno)))") }
        let text = key.rawRepresentation.base64EncodedString() + "\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        fsync(fd); close(fd)
        print(key.publicKey.rawRepresentation.base64EncodedString())
    }
}

struct Issue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Issue a device certificate (7F21) for a device's public key, at most 90 days, from a CA key file.")
    @Option(help: "The CA key file (base64 Ed25519 seed, as keygen writes).") var caKey: String
    @Option(help: "The CA key identifier (tag 42), e.g. 330782-device-ca-test.") var caKeyId: String
    @Option(help: "A certificate request line (kioskctl provision / kioskctl certificate request prints it).") var request: String?
    @Option(help: "Device identifier (tag 5F20), if no --request.") var deviceId: String?
    @Option(help: "Device public key, base64 (tag 86), if no --request.") var publicKey: String?
    @Option(help: "Valid from, YYYYMMDD (China Standard Time); default today.") var validFrom: String?
    @Option(help: "Days of validity, both ends counted (1–90).") var days = 90
    @Option(help: "Write the certificate here (binary); default: print it as hex.") var out: String?

    func run() throws {
        guard (1...90).contains(days) else { throw ValidationError("--days is 1 to 90 (sync spec §5)") }
        guard let seedText = FileManager.default.contents(atPath: caKey).map({ String(decoding: $0, as: UTF8.self) }),
              let seed = Data(base64Encoded: seedText.trimmingCharacters(in: .whitespacesAndNewlines)),
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            throw ValidationError("\(caKey) is not a base64 Ed25519 seed")
        }
        var id = deviceId, pk = publicKey
        if let request {
            let text = FileManager.default.contents(atPath: request) ?? Data(request.utf8)
            guard let o = try? JSONSerialization.jsonObject(with: text) as? [String: Any],
                  let d = o["device_id"] as? String, let p = o["public_key"] as? String else {
                throw ValidationError("--request is not a certificate request line (file or text)")
            }
            id = d; pk = p
        }
        guard let id, let pk, let raw = Data(base64Encoded: pk), raw.count == 32 else {
            throw ValidationError("give --request, or --device-id and --public-key (base64 of 32 bytes)")
        }
        let from = try validFrom.map { s -> CardDate in
            guard let d = CardDate(s) else { throw ValidationError("--valid-from \(s) is not YYYYMMDD") }
            return d
        } ?? CardDate(date: Date())
        let through = CardDate(date: from.startChinaStandardTime.addingTimeInterval(Double(days - 1) * 86_400))
        let cert = try DeviceCertificate.issue(caKeyID: caKeyId, caKey: key, deviceID: id, devicePublicKey: [UInt8](raw),
                                               validFrom: from, validThrough: through)
        if let out {
            guard FileManager.default.createFile(atPath: out, contents: Data(cert.encoded)) else { throw ValidationError("cannot write \(out)") }
            FileHandle.standardError.write(Data("device-ca: certificate for \(id), valid \(from) to \(through), written to \(out)\n".utf8))
        } else {
            print(Hex.encode(cert.encoded, uppercase: true))
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print what a certificate file says.")
    @Argument var file: String
    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        let c = try DeviceCertificate(bytes: DeviceCertificate.fileBytes(data))
        print("device \(c.deviceID), CA key \(c.caKeyID), valid \(c.validFrom) to \(c.validThrough), key \(Data(c.devicePublicKey).base64EncodedString())")
    }
}

DeviceCA.main()
