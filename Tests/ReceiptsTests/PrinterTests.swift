import Crypto
import Foundation
import Testing
@testable import Receipts
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PrinterTests {
    func receiptBytes(_ paper: Paper = .mm58) throws -> [UInt8] {
        try ReceiptRenderer.render(vectorSubsidy, key: try Fixtures.privateKey("KSK-TEST-0001"), paper: paper).escpos
    }

    @Test func statusBits() throws {
        let ok = try PrinterStatus(printer: 0x12, offlineCause: 0x12, paper: 0x12)
        #expect(ok.isOnline && !ok.isPaperOut && !ok.isCoverOpen && !ok.isPaperNearEnd)
        try ok.check()
        #expect(throws: PrinterError.paperOut) { try PrinterStatus(printer: 0x12, offlineCause: 0x12, paper: 0x72).check() }
        #expect(throws: PrinterError.paperOut) { try PrinterStatus(printer: 0x1A, offlineCause: 0x32, paper: 0x12).check() }
        #expect(throws: PrinterError.coverOpen) { try PrinterStatus(printer: 0x1A, offlineCause: 0x16, paper: 0x72).check() }
        #expect(throws: PrinterError.offline) { try PrinterStatus(printer: 0x1A, offlineCause: 0x52, paper: 0x12).check() }
        let nearEnd = try PrinterStatus(printer: 0x12, offlineCause: 0x12, paper: 0x1E)
        #expect(nearEnd.isPaperNearEnd)
        try nearEnd.check()
        #expect(throws: PrinterError.badStatusReply(0x00)) { try PrinterStatus(printer: 0x12, offlineCause: 0x00, paper: 0x12) }
    }

    @Test func tcpPrinterReceivesExactlyTheBytesAfterAnOKStatus() throws {
        let fake = try FakeTCPPrinter(replies: FakePrinterProtocol.ok)
        let bytes = try receiptBytes(.mm80)
        try TCPPrinter(host: "127.0.0.1", port: fake.port, timeout: 2).send(bytes)
        let result = try fake.result()
        #expect(result.queries == [1, 2, 4])
        #expect(result.printed == bytes)
    }

    @Test func tcpPrinterOutOfPaperPrintsNothing() throws {
        let fake = try FakeTCPPrinter(replies: FakePrinterProtocol.paperEnd)
        #expect(throws: PrinterError.paperOut) { try TCPPrinter(host: "127.0.0.1", port: fake.port, timeout: 2).send(try receiptBytes()) }
        let result = try fake.result()
        #expect(result.printed.isEmpty && result.queries == [1, 2, 4])
    }

    @Test func tcpPrinterStatusAndCoverOpen() throws {
        let fake = try FakeTCPPrinter(replies: FakePrinterProtocol.coverOpen)
        let status = try #require(try TCPPrinter(host: "127.0.0.1", port: fake.port, timeout: 2).status())
        #expect(status.isCoverOpen && !status.isOnline)
        #expect(try fake.result().printed.isEmpty)
        let again = try FakeTCPPrinter(replies: FakePrinterProtocol.coverOpen)
        #expect(throws: PrinterError.coverOpen) { try TCPPrinter(host: "127.0.0.1", port: again.port, timeout: 2).send([0x0A]) }
        #expect(try again.result().printed.isEmpty)
    }

    @Test func tcpPrinterThatNeverAnswersTimesOut() throws {
        let fake = try FakeTCPPrinter(replies: [:])
        // `.timeout`, not a dropped connection: the printer's own timeout ended the wait (the
        // fake hangs up only after 5 s of silence). Not timed: a loaded machine must not fail it.
        #expect(throws: PrinterError.timeout) { try TCPPrinter(host: "127.0.0.1", port: fake.port, timeout: 0.3).send(try receiptBytes()) }
        #expect(try fake.result().printed.isEmpty)
    }

    @Test func tcpPrinterNobodyListening() throws {
        // An ephemeral port that was free a moment ago and has no listener now.
        let fake = try FakeTCPPrinter(replies: FakePrinterProtocol.ok)
        try TCPPrinter(host: "127.0.0.1", port: fake.port, timeout: 2).send([0x0A])
        _ = try fake.result()
        #expect(throws: PrinterError.self) { try TCPPrinter(host: "127.0.0.1", port: fake.port, timeout: 1).send([0x0A]) }
        do { try TCPPrinter(host: "127.0.0.1", port: fake.port, timeout: 1).send([0x0A]) } catch let e as PrinterError {
            guard case .unreachable = e else { Issue.record("expected unreachable, got \(e)"); return }
        }
        #expect(throws: PrinterError.self) { try TCPPrinter(host: "no-such-host.invalid", port: 9100, timeout: 1).send([0x0A]) }
    }

    @Test func devicePrinterOverAPseudoTerminal() throws {
        let fake = try FakeDevicePrinter(replies: FakePrinterProtocol.ok)
        let bytes = try receiptBytes()
        try DevicePrinter(path: fake.path, timeout: 2).send(bytes)
        let result = try fake.result()
        #expect(result.queries == [1, 2, 4])
        #expect(result.printed == bytes)   // raw mode: no LF → CR LF
    }

    @Test func devicePrinterOutOfPaperPrintsNothing() throws {
        let fake = try FakeDevicePrinter(replies: FakePrinterProtocol.paperEnd)
        #expect(throws: PrinterError.paperOut) { try DevicePrinter(path: fake.path, timeout: 2).send(try receiptBytes()) }
        #expect(try fake.result().printed.isEmpty)
        #expect(throws: PrinterError.self) { try DevicePrinter(path: "/dev/no-such-printer", timeout: 1).send([0x0A]) }
    }

    @Test func filePrinterFolderAndAppend() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let a = try receiptBytes(.mm58), b = try receiptBytes(.mm80)

        let receipts = folder.appendingPathComponent("receipts", isDirectory: true)
        let perReceipt = FilePrinter(url: receipts)
        #expect(perReceipt.mode == .folder)
        let first = try perReceipt.write(a)
        try perReceipt.send(b)
        let files = try FileManager.default.contentsOfDirectory(atPath: receipts.path).sorted()
        #expect(files.count == 2 && files.allSatisfy { $0.hasPrefix("receipt-") && $0.hasSuffix(".escpos") })
        #expect(try Data(contentsOf: first) == Data(a))
        let contents = Set(try files.map { try Data(contentsOf: receipts.appendingPathComponent($0)) })
        #expect(contents == [Data(a), Data(b)])

        let log = folder.appendingPathComponent("printer.bin")
        let appending = FilePrinter(url: log)
        #expect(appending.mode == .append)
        try appending.send(a)
        try appending.send(b)
        #expect(try Data(contentsOf: log) == Data(a + b))

        let nowhere = FilePrinter(url: folder.appendingPathComponent("missing/printer.bin"))
        #expect(throws: PrinterError.self) { try nowhere.send(a) }
    }

    @Test func parseSpecs() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let dir = try #require(try Printer.parse(spec: "file:" + folder.path) as? FilePrinter)
        #expect(dir.mode == .folder && dir.url.path == folder.path)
        let file = try #require(try Printer.parse(spec: "file:/var/tmp/receipts.bin") as? FilePrinter)
        #expect(file.mode == .append && file.url.path == "/var/tmp/receipts.bin")
        #expect((try Printer.parse(spec: "file:/var/tmp/new-folder/") as? FilePrinter)?.mode == .folder)
        let tcp = try #require(try Printer.parse(spec: "tcp:192.168.1.50:9100", timeout: 3) as? TCPPrinter)
        #expect(tcp.host == "192.168.1.50" && tcp.port == 9100 && tcp.timeout == 3 && tcp.checksStatus)
        let v6 = try #require(try Printer.parse(spec: "tcp:[::1]:9101") as? TCPPrinter)
        #expect(v6.host == "::1" && v6.port == 9101)
        let device = try #require(try Printer.parse(spec: "device:/dev/usb/lp0") as? DevicePrinter)
        #expect(device.path == "/dev/usb/lp0")

        #expect(throws: PrinterSpecError.unknownScheme("lp0")) { try Printer.parse(spec: "lp0") }
        #expect(throws: PrinterSpecError.unknownScheme("usb:/dev/usb/lp0")) { try Printer.parse(spec: "usb:/dev/usb/lp0") }
        #expect(throws: PrinterSpecError.missingPath("file:")) { try Printer.parse(spec: "file:") }
        #expect(throws: PrinterSpecError.missingPath("device:lp0")) { try Printer.parse(spec: "device:lp0") }
        for bad in ["tcp:printer", "tcp::9100", "tcp:printer:0", "tcp:printer:65536", "tcp:printer:http"] {
            #expect(throws: PrinterSpecError.badHostPort(bad)) { try Printer.parse(spec: bad) }
        }
    }
}
