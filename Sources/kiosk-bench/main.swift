import KioskProtocol
import ArgumentParser
import BenefitCard
import Crypto
import Foundation
import KioskCore
import KioskStore
import Logging
import SmartCard

/// Benchmarks that print figures (never asserted): APDU round trip and full card
/// read + authenticate through pcscd. `Benchmarks/card-bench.sh` runs it beside the
/// bare C baseline and prints the ratio.
struct KioskBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kiosk-bench", subcommands: [CardBench.self, SnapshotGen.self, SnapshotInstallBench.self, DecideBench.self, SnapshotProfile.self, InstallWhileTapping.self, RosterChangeGen.self, BenchDeviceKey.self, ReceiptBench.self, DrainBench.self, HubLoadBench.self, TapToScreenBench.self, QueueAlerts.self])
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
    @Option(help: "Run only this figure (apdu_round_trip, read_and_authenticate, ed25519_verify, tap_to_decision, tap_to_granted): callgrind counts one at a time.")
    var only: String?
    @Flag(help: "Also tap_to_granted: a 1-fen bill charged and written to the card (the device needs its key and certificate).")
    var grant = false

    func run() throws {
        guard let eq = issuerKey.firstIndex(of: "="), let data = Data(base64Encoded: String(issuerKey[issuerKey.index(after: eq)...])) else {
            throw ValidationError("--issuer-key is KEY_ID=BASE64")
        }
        let trust = TrustStore(issuerKeys: [String(issuerKey[..<eq]): try Curve25519.Signing.PublicKey(rawRepresentation: data)])
        let ctx = try PCSCContext()
        let connection = try ctx.connect(reader: reader)
        let select = CommandAPDU(ins: 0xA4, p1: 4, p2: 0, data: CardType.medical.aid, le: 0).bytes

        func wanted(_ name: String) -> Bool { only == nil || only == name }
        if only == nil { for _ in 0..<50 { _ = try connection.transmitRaw(select) } }   // warm up
        if wanted("apdu_round_trip") {
            report("apdu_round_trip", try measure(iterations) { _ = try connection.transmitRaw(select) })
        }

        var challenges = SystemChallengeSource()
        if wanted("read_and_authenticate") {
            let full = try measure(max(iterations / 5, 50)) {
                let session = CardSession(channel: connection)
                let readout = try session.read()
                let verdict = try session.authenticate(readout, trust: trust, challenges: &challenges)
                precondition(verdict == .authentic, "benchmark card must be authentic")
            }
            report("read_and_authenticate", full)
        }

        // One Ed25519 verification, the unit of the crypto the C baseline does not do: a read +
        // authenticate verifies two signatures (issuer, INTERNAL AUTHENTICATE), a tap → decision
        // three (and EF.USAGE's).
        let signer = Curve25519.Signing.PrivateKey()
        let message = Data((0..<64).map { UInt8($0) })
        let signature = try signer.signature(for: message)
        if wanted("ed25519_verify") {
            report("ed25519_verify", try measure(iterations) { precondition(signer.publicKey.isValidSignature(signature, for: message)) })
        }

        // Tap → decision as the kiosk does it (Kiosk.check): read, authenticate, trust the
        // usage record, resolve pending deductions, snapshot lookup, rule.
        guard let stateDir else { return }
        // Taps per figure: a fifth of the APDU round trips, at least 50; exactly --iterations with --only.
        let taps = only == nil ? max(iterations / 5, 50) : iterations
        guard let instant = Timestamp.date(now) else { throw ValidationError("--now is not RFC 3339") }
        let kiosk = Kiosk(device: try Device(stateDir: URL(fileURLWithPath: stateDir)), clock: KioskClock { instant })
        if wanted("tap_to_decision") {
            let tap = try measure(taps) {
                let outcome = try kiosk.check(connection)
                precondition(outcome.decision.code == .eligible, "benchmark card must be eligible, got \(outcome.decision.code)")
            }
            report("tap_to_decision", tap)
        }

        // Tap → granted (Kiosk.charge): the read and decision above, then the v2 write
        // (certificate, challenge, the signed record, the card's acknowledgement checked) and
        // the ledger's two durable transactions (pending, committed). A bill of 1 fen, so the
        // allowance outlasts the run; needs a device key and certificate (card-bench.sh).
        guard grant, wanted("tap_to_granted") else { return }
        let run = UInt64(DispatchTime.now().uptimeNanoseconds)
        var bill = 0
        let granted = try measure(taps) {
            bill += 1
            let outcome = try kiosk.charge(connection, billFen: 1, billReference: "BENCH-\(run)-\(bill)")
            precondition(outcome.decision.code == .granted && !outcome.records.isEmpty,
                         "benchmark charge must be granted, got \(outcome.decision.code): \(outcome.decision.detail)")
        }
        report("tap_to_granted", granted)
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

// The product's info lines (one per subsidy granted) would be most of a run's output.
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}
KioskBench.main()
