import ArgumentParser
import BenefitCard
import Crypto
import Foundation
import KioskCore
import KioskStore
import SmartCard

/// Benchmarks that print figures (never asserted): APDU round trip and full card
/// read + authenticate through pcscd. `Benchmarks/card-bench.sh` runs it beside the
/// bare C baseline and prints the ratio.
struct KioskBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kiosk-bench", subcommands: [CardBench.self, SnapshotGen.self, SnapshotInstallBench.self, DecideBench.self, SnapshotProfile.self, InstallWhileTapping.self, RosterChangeGen.self, BenchDeviceKey.self, ReceiptBench.self])
}

struct CardBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "card", abstract: "APDU round trip and card read+authenticate through pcscd.")
    @Option var reader = "Virtual PCD 00 00"
    @Option var iterations = 2000
    @Option(help: "Trusted issuer key KEY_ID=BASE64.") var issuerKey: String
    @Option(help: "A provisioned state folder with a snapshot installed: adds tap_to_decision (the product's whole status check).")
    var stateDir: String?
    @Option(help: "The instant the decisions are made at (RFC 3339), inside the snapshot's validity.")
    var now = "2026-11-22T03:00:00Z"

    func run() throws {
        guard let eq = issuerKey.firstIndex(of: "="), let data = Data(base64Encoded: String(issuerKey[issuerKey.index(after: eq)...])) else {
            throw ValidationError("--issuer-key is KEY_ID=BASE64")
        }
        let trust = TrustStore(issuerKeys: [String(issuerKey[..<eq]): try Curve25519.Signing.PublicKey(rawRepresentation: data)])
        let ctx = try PCSCContext()
        let connection = try ctx.connect(reader: reader)
        let select = CommandAPDU(ins: 0xA4, p1: 4, p2: 0, data: CardType.medical.aid, le: 0).bytes

        for _ in 0..<50 { _ = try connection.transmitRaw(select) }   // warm up
        let rtt = try measure(iterations) { _ = try connection.transmitRaw(select) }
        report("apdu_round_trip", rtt)

        var challenges = SystemChallengeSource()
        let full = try measure(max(iterations / 5, 50)) {
            let session = CardSession(channel: connection)
            let readout = try session.read()
            let verdict = try session.authenticate(readout, trust: trust, challenges: &challenges)
            precondition(verdict == .authentic, "benchmark card must be authentic")
        }
        report("read_and_authenticate", full)

        // One Ed25519 verification, the unit of the crypto the C baseline does not do: a read +
        // authenticate verifies two signatures (issuer, INTERNAL AUTHENTICATE), a tap → decision
        // three (and EF.USAGE's).
        let signer = Curve25519.Signing.PrivateKey()
        let message = Data((0..<64).map { UInt8($0) })
        let signature = try signer.signature(for: message)
        let verify = try measure(iterations) { precondition(signer.publicKey.isValidSignature(signature, for: message)) }
        report("ed25519_verify", verify)

        // Tap → decision as the kiosk does it (Kiosk.check): read, authenticate, trust the
        // usage record, resolve pending deductions, snapshot lookup, rule.
        guard let stateDir else { return }
        guard let instant = Timestamp.date(now) else { throw ValidationError("--now is not RFC 3339") }
        let kiosk = Kiosk(device: try Device(stateDir: URL(fileURLWithPath: stateDir)), clock: KioskClock { instant })
        let tap = try measure(max(iterations / 5, 50)) {
            let outcome = try kiosk.check(connection)
            precondition(outcome.decision.code == .eligible, "benchmark card must be eligible, got \(outcome.decision.code)")
        }
        report("tap_to_decision", tap)
    }

    func measure(_ n: Int, _ body: () throws -> Void) throws -> [Double] {
        var samples: [Double] = []
        samples.reserveCapacity(n)
        for _ in 0..<n {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
        }
        return samples.sorted()
    }

    func report(_ name: String, _ s: [Double]) {
        let mean = s.reduce(0, +) / Double(s.count)
        let p50 = s[s.count / 2], p99 = s[min(s.count - 1, s.count * 99 / 100)]
        print(String(format: "swift %@ n=%d mean_us=%.1f p50_us=%.1f p99_us=%.1f", name, s.count, mean, p50, p99))
    }
}

KioskBench.main()
