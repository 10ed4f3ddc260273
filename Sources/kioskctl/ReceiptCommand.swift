import KioskProtocol
import ArgumentParser
import Foundation
import KioskCore
import KioskStore
import Receipts

struct ReceiptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "receipt", abstract: "Print, reprint and verify receipts.",
                                                    subcommands: [PrintReceipt.self, Reprint.self, Verify.self])

    struct PrintOptions: ParsableArguments {
        @OptionGroup var state: StateOptions
        @Argument(help: "The record_id.") var recordId: String
        @Option(help: "Printer (file:/path, tcp:HOST:9100, device:/dev/usb/lp0); default: the provisioned one.") var printer: String?
        @Option(help: "Paper width in mm: 58 or 80.") var paper = 58

        func run(reprint: Bool) throws {
            do {
                let kiosk = try state.kiosk()
                let desk = ReceiptDesk(device: kiosk.device, paper: paper == 80 ? .mm80 : .mm58, printerSpec: printer)
                _ = try desk.content(recordID: recordId)   // a clear error for an unknown or unprintable record
                let outcome = desk.print(recordID: recordId, now: kiosk.clock.now(), reprint: reprint)
                Swift.print("\(recordId): \(outcome.text)")
                if case .failed = outcome { throw ExitCode(ExitStatus.refused.rawValue) }
            } catch let e as ExitCode {
                throw e
            } catch let f as CommandFailure {
                FileHandle.standardError.write(Data("kioskctl: \(f.message)\n".utf8)); throw ExitCode(f.status.rawValue)
            } catch {
                FileHandle.standardError.write(Data("kioskctl: \(error)\n".utf8)); throw ExitCode(ExitStatus.refused.rawValue)
            }
        }
    }

    struct PrintReceipt: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "print", abstract: "Print a record's receipt.")
        @OptionGroup var options: PrintOptions
        func run() throws { try options.run(reprint: false) }
    }

    struct Reprint: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a record's receipt again, marked as a reprint.")
        @OptionGroup var options: PrintOptions
        func run() throws { try options.run(reprint: true) }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify a receipt's QR: the JWS itself, or a PNG of the QR (read with zbarimg).")
        @OptionGroup var state: StateOptions
        @Argument(help: "A JWS, or a PNG/image file holding the QR code.") var input: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            do {
                let kiosk = try state.kiosk()
                var jws = input
                if FileManager.default.fileExists(atPath: input) {
                    let p = Process()
                    p.executableURL = URL(fileURLWithPath: "/usr/bin/zbarimg")
                    p.arguments = ["-q", "--raw", "--nodbus", "-Sbinary", input]
                    let out = Pipe()
                    p.standardOutput = out
                    try p.run()
                    let data = out.fileHandleForReading.readDataToEndOfFile()
                    p.waitUntilExit()
                    guard p.terminationStatus == 0 else { throw CommandFailure(message: "no QR code found in \(input)", status: .refused) }
                    jws = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                }
                let v = try ReceiptDesk(device: kiosk.device).verify(jws)
                var o: [String: Any] = ["valid": true, "device_id": v.deviceID, "record_id": v.recordID, "kind": v.kind.rawValue,
                                        "card_number": v.maskedCardNumber, "time": Timestamp.string(v.time)]
                switch v.kind {
                case .reversal:
                    if let a = v.amountFen { o["amount_fen"] = a }
                    if let r = v.reversedRecordID { o["reverses"] = r }
                default:
                    if let b = v.billFen { o["bill_fen"] = b }
                    if let s = v.subsidyFen { o["subsidy_fen"] = s }
                    if let p = v.patientPaysFen { o["patient_pays_fen"] = p }
                    if let l = v.allowanceLeftFen { o["allowance_left_fen"] = l }
                }
                if let m = v.matterCode { o["matter"] = m }
                if let r = try kiosk.device.store.record(v.recordID) { o["record_status"] = r.status }
                // Issue 21 item 6: a receipt signed by a device the snapshot now says is retired
                // is genuine but says so (a retired kiosk's key may have left with it).
                let signer = try kiosk.device.store.deviceStatus(v.deviceID)
                let retired = signer == "retired"
                if let signer { o["device_status"] = signer }
                if json { printJSON(o) } else {
                    Swift.print((retired ? "RETIRED receipt (signed by a device now retired: check its time against the retirement)" : "VALID receipt")
                                + " \(v.recordID) (\(v.kind.title)) signed by \(v.deviceID), card \(v.maskedCardNumber), \(ReceiptFormat.chinaTime(v.time))"
                                + (v.kind == .reversal
                                    ? ", gives back \(ReceiptFormat.yuan(v.amountFen ?? 0)) of \(v.reversedRecordID ?? "?")"
                                    : (v.subsidyFen.map { ", subsidy \(ReceiptFormat.yuan($0)) of bill \(ReceiptFormat.yuan(v.billFen ?? 0)), patient pays \(ReceiptFormat.yuan(v.patientPaysFen ?? 0)), left \(ReceiptFormat.yuan(v.allowanceLeftFen ?? 0))" } ?? ""))
                                + (v.matterCode.map { ", matter \($0)" } ?? ""))
                }
                if retired { throw ExitCode(ExitStatus.declined.rawValue) }
            } catch let e as ExitCode {
                throw e
            } catch let f as CommandFailure {
                try fail(f)
            } catch {
                if json { printJSON(["valid": false, "error": "\(error)"]) }
                try fail(CommandFailure(message: "receipt NOT valid: \(error)", status: .notAuthentic))
            }
        }
    }
}
