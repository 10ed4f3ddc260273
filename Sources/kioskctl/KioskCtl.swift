import ArgumentParser
import BenefitCard
import Crypto
import Foundation
import KioskCore
import SmartCard

struct KioskCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kioskctl",
        abstract: "BenefitKiosk technician command line.",
        subcommands: [Readers.self, Card.self, Provision.self, Snapshot.self, Check.self, Charge.self, ApplyLegalAid.self,
                      Ledger.self, Queue.self, Reverse.self, Recover.self, ReceiptCommand.self, Upload.self, Certificate.self, Clock.self, BillAPIToken.self, ScreenURL.self, Voice.self, Doctor.self]
    )
}

/// Options every command that touches a reader shares.
struct ReaderOptions: ParsableArguments {
    @Option(help: "Reader to use (default: the first reader holding a card).")
    var reader: String?

    @Flag(help: "Also use vpcd's \"Virtual PCD\" readers (demo, tests, training). Also BENEFIT_KIOSK_VIRTUAL_READERS=1.")
    var virtualReaders = false

    @Flag(help: "Print every APDU exchanged with the card to standard error, with its time; card and phone numbers, names and signatures masked.")
    var trace = false

    var filter: ReaderFilter {
        virtualReaders ? ReaderFilter(allowVirtual: true) : .fromEnvironment
    }

    /// `channel`, traced to standard error when `--trace` was given.
    func traced(_ channel: CardChannel) -> CardChannel {
        guard trace else { return channel }
        return TracingChannel(channel) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    }
}

/// Exit codes, the same for every command (documented in the README): KioskCore's one
/// mapping, shared with kioskd.
typealias ExitStatus = KioskExit

struct CommandFailure: Error, CustomStringConvertible {
    var message: String
    var status: ExitStatus
    var description: String { message }
}

extension ParsableCommand {
    /// Prints the failure on stderr and ends the command with its status (`ExitCode`, so
    /// `defer` blocks run and the command can be run in-process by tests).
    func fail(_ f: CommandFailure) throws -> Never {
        FileHandle.standardError.write(Data("kioskctl: \(f.message)\n".utf8))
        throw ExitCode(f.status.rawValue)
    }
}

func pcscFailure(_ error: Error) -> CommandFailure {
    switch CardError(error) {
    case .serviceUnavailable:
        return CommandFailure(message: "the PC/SC service (pcscd) is not running; start it (systemctl start pcscd.socket, or pcscd --foreground)", status: .serviceUnavailable)
    case .readerGone: return CommandFailure(message: "the reader went away", status: .noCard)
    case .cardRemoved: return CommandFailure(message: "the card left the reader; present it again", status: .noCard)
    case let other: return CommandFailure(message: "\(other)", status: .noCard)
    }
}

struct Readers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the PC/SC readers and whether each holds a card.")

    @OptionGroup var options: ReaderOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        do {
            let ctx = try PCSCContext()
            let all = try ctx.readers()
            var rows: [[String: Any]] = []
            for name in all {
                let used = options.filter.accepts(name)
                let state = try? ctx.readerState(name)
                rows.append([
                    "reader": name, "used": used,
                    "card_present": state?.cardPresent ?? false,
                    "atr": state.map { $0.cardPresent ? $0.atr.hexString : "" } ?? "",
                ])
            }
            if json {
                printJSON(["readers": rows])
            } else if rows.isEmpty {
                print("no readers (is the reader plugged in? is its driver, libccid, installed?)")
            } else {
                for r in rows {
                    let card = (r["card_present"] as! Bool) ? "card present, ATR \(r["atr"] as! String)" : "no card"
                    let note = (r["used"] as! Bool) ? "" : "  [ignored: virtual reader; use --virtual-readers]"
                    print("\(r["reader"] as! String): \(card)\(note)")
                }
            }
        } catch {
            try fail(pcscFailure(error))
        }
    }
}

func printJSON(_ object: Any) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}
