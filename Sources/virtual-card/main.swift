import ArgumentParser
import BenefitCard
import Foundation
import Logging
import VirtualCard

LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }

/// Serves one emulated card into a vpcd reader until stopped.
struct VirtualCardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "virtual-card",
        abstract: "Emulate a BenefitKiosk card (card spec v2) in a vpcd virtual reader.",
        discussion: "Exits non-zero with a message when vpcd is not reachable or the reader (port) already has a card."
    )

    @Option(help: "JSON with the card(s): {\"cards\":[…]} as in cards.json, a list, or one card.")
    var cards: String
    @Option(help: "Card number to emulate (default: the first card in the file).")
    var card: String?
    @Option(help: "vpcd host.") var host = "127.0.0.1"
    @Option(help: "vpcd port: 35963 is reader \"Virtual PCD 00 00\", 35964 is \"… 00 01\".") var port: UInt16 = 35963
    @Option(help: "Answer 61xx and hand data out by GET RESPONSE in chunks of N bytes.") var getResponseChunk: Int?
    @Flag(help: "Answer 6Cxx when Le is not the exact length.") var wrongLe = false
    @Flag(help: "Change one byte of the holder name.") var tamperHolder = false
    @Flag(help: "Answer INTERNAL AUTHENTICATE with another key (a clone).") var wrongCardKey = false
    @Flag(help: "Leave the reader when the next usage write arrives, without applying it.") var pullBeforeWrite = false
    @Flag(help: "Apply the next usage write, then leave the reader without answering.") var pullAfterWrite = false
    @Flag(help: "Refuse usage writes (65 81).") var refuseWrites = false
    @Option(help: "Answer PSO VERIFY CERTIFICATE with this status word (e.g. 6982) and hold no certificate.") var refuseCertificate: String?
    @Option(help: "Answer GET CHALLENGE with this status word (e.g. 6985).") var refuseChallenge: String?
    @Option(help: "Answer every UPDATE BINARY with this status word (e.g. 6985, 6A80) and write nothing.") var writeStatus: String?
    @Option(help: "Answer a good write with 90 00 but a bad acknowledgement: missing or invalid.") var ackFault: String?
    @Flag(help: "With --ack-fault: do not apply the write (a fake card); by default it is applied.") var ackFaultSkipsWrite = false
    @Option(help: "A relay: READ BINARY of EF.USAGE returns this hex (an older record) while INTERNAL AUTHENTICATE signs the real one.")
    var staleUsage: String?
    @Option(help: "GET CHALLENGE always answers these 16 bytes (hex), for scripted tests.") var fixedChallenge: String?
    @Option(help: "Seconds to wait for vpcd's first message before deciding the reader is taken by another card.")
    var claimTimeout: Double = 5
    @Option(help: "After a pull, put the card back after this many seconds (default: exit).") var reinsertAfter: Double?
    @Flag(help: "List the cards in the file and exit.") var list = false
    @Option(help: "Answer as slowly as a real contact card: fast (115.2 kbit/s, Ed25519 signature 40 ms) or slow (9,600 bit/s, signature 250 ms); docs/benchmarks.md has the model.")
    var timing: String?

    var cardTiming: CardTiming? { timing.flatMap { CardTiming.profiles[$0] } }

    func validate() throws {
        if let timing, CardTiming.profiles[timing] == nil { throw ValidationError("--timing is fast or slow") }
    }

    func run() throws {
        let all = try CardDescription.load(from: URL(fileURLWithPath: cards))
        if list {
            for c in all { print("\(c.cardNumber)  \(c.name ?? "")  \(c.note ?? "")") }
            return
        }
        guard let d = card.map({ n in all.first { $0.cardNumber == n } }) ?? all.first else {
            throw ValidationError("no card \(card ?? "") in \(cards)")
        }
        for (text, flag) in [(refuseCertificate, "refuse-certificate"), (refuseChallenge, "refuse-challenge"), (writeStatus, "write-status")] {
            if let text, Misbehaviour.statusWord(hex: text) == nil {
                throw ValidationError("--\(flag): \(text) is not a status word like 6982")
            }
        }
        var fault: Misbehaviour.AckFault?
        if let ackFault {
            guard let f = Misbehaviour.AckFault(rawValue: ackFault) else { throw ValidationError("--ack-fault: missing or invalid") }
            fault = f
        }
        var stale: [UInt8]?
        if let staleUsage {
            guard let b = Misbehaviour.bytes(hex: staleUsage) else { throw ValidationError("--stale-usage is not hex") }
            stale = b
        }
        var challenge: [UInt8]?
        if let fixedChallenge {
            guard let b = Misbehaviour.bytes(hex: fixedChallenge), b.count == 16 else { throw ValidationError("--fixed-challenge is not 16 hex bytes") }
            challenge = b
        }
        let m = Misbehaviour(getResponseChunk: getResponseChunk, wrongLe: wrongLe, tamperHolder: tamperHolder,
                             wrongCardKey: wrongCardKey, pullBeforeWrite: pullBeforeWrite,
                             pullAfterWrite: pullAfterWrite, refuseWrites: refuseWrites,
                             refuseCertificate: refuseCertificate.flatMap(Misbehaviour.statusWord(hex:)),
                             refuseChallenge: refuseChallenge.flatMap(Misbehaviour.statusWord(hex:)),
                             forceWriteStatus: writeStatus.flatMap(Misbehaviour.statusWord(hex:)),
                             ackFault: fault, ackFaultApplies: !ackFaultSkipsWrite, staleUsage: stale)
        let emulator = try CardEmulator(description: d, misbehaviour: m)
        emulator.setFixedChallenge(challenge)
        let client = VPCDClient(emulator: emulator, host: host, port: port, timing: cardTiming)
        signal(SIGTERM) { _ in Foundation.exit(0) }
        signal(SIGINT) { _ in Foundation.exit(0) }
        while true {
            do {
                try client.insert(timeout: 10, claimTimeout: claimTimeout)
            } catch {
                FileHandle.standardError.write(Data("virtual-card: error: \(error)\n".utf8))
                Foundation.exit(error is VPCDError ? 3 : 1)
            }
            FileHandle.standardError.write(Data("virtual-card: card \(d.cardNumber) in vpcd \(host):\(port)\n".utf8))
            while !client.waitUntilRemoved(timeout: 3600) {}
            guard let delay = reinsertAfter else { return }
            Thread.sleep(forTimeInterval: delay)
        }
    }
}

VirtualCardCommand.main()
