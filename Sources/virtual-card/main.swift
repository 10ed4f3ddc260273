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
        abstract: "Emulate a BenefitKiosk card (card spec v1) in a vpcd virtual reader."
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
    @Option(help: "After a pull, put the card back after this many seconds (default: exit).") var reinsertAfter: Double?
    @Flag(help: "List the cards in the file and exit.") var list = false

    func run() throws {
        let all = try CardDescription.load(from: URL(fileURLWithPath: cards))
        if list {
            for c in all { print("\(c.cardNumber)  \(c.name ?? "")  \(c.note ?? "")") }
            return
        }
        guard let d = card.map({ n in all.first { $0.cardNumber == n } }) ?? all.first else {
            throw ValidationError("no card \(card ?? "") in \(cards)")
        }
        let m = Misbehaviour(getResponseChunk: getResponseChunk, wrongLe: wrongLe, tamperHolder: tamperHolder,
                             wrongCardKey: wrongCardKey, pullBeforeWrite: pullBeforeWrite,
                             pullAfterWrite: pullAfterWrite, refuseWrites: refuseWrites)
        let emulator = try CardEmulator(description: d, misbehaviour: m)
        let client = VPCDClient(emulator: emulator, host: host, port: port)
        signal(SIGTERM) { _ in Foundation.exit(0) }
        signal(SIGINT) { _ in Foundation.exit(0) }
        while true {
            try client.insert(timeout: 10)
            FileHandle.standardError.write(Data("virtual-card: card \(d.cardNumber) in vpcd \(host):\(port)\n".utf8))
            while !client.waitUntilRemoved(timeout: 3600) {}
            guard let delay = reinsertAfter else { return }
            Thread.sleep(forTimeInterval: delay)
        }
    }
}

VirtualCardCommand.main()
