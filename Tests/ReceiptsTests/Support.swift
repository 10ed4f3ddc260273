import Crypto
import Foundation
import Synchronization
import TestVectors
import Testing
@testable import Receipts
#if canImport(Glibc)
import Glibc
#endif

/// The spec vectors (TestVectors), each key looked up with `#require` so a missing one fails the test.
enum Fixtures {
    static var receiptAndBatch: [String: Any] { Vectors.json("receipt-and-batch.json") }

    static func string(_ key: String) throws -> String {
        try #require(receiptAndBatch[key] as? String, "receipt-and-batch.json lacks \(key)")
    }

    static func integer(_ key: String) throws -> Int {
        try #require(receiptAndBatch[key] as? Int, "receipt-and-batch.json lacks \(key)")
    }

    /// `receipt_jws`: the …0017 bill's subsidy receipt.
    static func receiptJWS() throws -> String { try string("receipt_jws") }

    /// `reversal_receipt_jws`: its reversal's receipt.
    static func reversalJWS() throws -> String { try string("reversal_receipt_jws") }

    /// `receipt_payload` / `reversal_receipt_payload`, as JSON values.
    static func payload(_ key: String) throws -> [String: Any] {
        try #require(receiptAndBatch[key] as? [String: Any], "receipt-and-batch.json lacks \(key)")
    }

    /// An integer of a payload.
    static func int64(_ payload: [String: Any], _ key: String) throws -> Int64 {
        Int64(try #require(payload[key] as? Int, "payload lacks \(key)"))
    }

    /// `worst_case_jws_bytes` of `ms`, `rv` or `la`.
    static func worstCaseBytes(_ kind: ReceiptKind) throws -> Int {
        let sizes = try #require(receiptAndBatch["worst_case_jws_bytes"] as? [String: Int])
        return try #require(sizes[kind.rawValue])
    }

    /// The records of a batch body (`batch_body`, `reversal_batch_body`, `two_program_batch_body`), each as its own JSON text.
    static func batchRecords(_ key: String) throws -> [String] {
        let body = try #require(try JSONSerialization.jsonObject(with: Data(try string(key).utf8)) as? [String: Any])
        let records = try #require(body["records"] as? [[String: Any]])
        return try records.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
    }

    /// A program's `limit_fen` in the vectors' snapshot (`snapshot-small.jsonl`).
    static func limitFen(_ program: String) throws -> Int64 {
        for line in String(decoding: Vectors.data("snapshot-small.jsonl"), as: UTF8.self).split(separator: "\n") {
            guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  o["type"] as? String == "program", o["code"] as? String == program else { continue }
            return Int64(try #require(o["limit_fen"] as? Int))
        }
        throw FixtureMissing(what: "program \(program) in snapshot-small.jsonl")
    }

    struct FixtureMissing: Error { var what: String }

    static func privateKey(_ device: String) throws -> Curve25519.Signing.PrivateKey {
        let text = try #require(Vectors.devices[device]?["private_seed"])
        let seed = try #require(Data(base64Encoded: text))
        return try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
    }

    static func publicKey(_ device: String) throws -> Curve25519.Signing.PublicKey {
        let text = try #require(Vectors.devices[device]?["public_key"])
        let raw = try #require(Data(base64Encoded: text))
        return try Curve25519.Signing.PublicKey(rawRepresentation: raw)
    }
}

/// A JWS over any header and payload text, signed with `key`: for payloads `ReceiptJWS.sign` would refuse to make.
func signRaw(header: String = #"{"alg":"EdDSA","kid":"KSK-TEST-0001"}"#, payload: String, key: Curve25519.Signing.PrivateKey) throws -> String {
    let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
    return input + "." + Base64URL.encode(Array(try key.signature(for: Array(input.utf8))))
}

/// 2026-11-22T03:00:00Z, the vectors' clock (11:00:00 in China).
let vectorTime = Date(timeIntervalSince1970: 1_795_316_400)

/// The subsidy of vectors/README …0017 (record KSK-TEST-0001-1): bill 10000, subsidy 10000, 30000 left of 60000.
let vectorSubsidy = ReceiptContent.subsidy(
    seq: 1, institution: "330782-H01", deviceID: "KSK-TEST-0001", time: vectorTime,
    cardNumber: "3307820000000017", holderName: "王秀英", billFen: 10000, subsidyFen: 10000, patientPaysFen: 0,
    allowanceLeftFen: 30000)

/// Its reversal (record KSK-TEST-0001-2, ten minutes later).
let vectorReversal = ReceiptContent.reversal(
    seq: 2, institution: "330782-H01", deviceID: "KSK-TEST-0001", time: Date(timeIntervalSince1970: 1_795_317_000),
    cardNumber: "3307820000000017", holderName: "王秀英", reversedSeq: 1, amountFen: 10000, reason: "收费处撤销账单")

let vectorLegalAid = ReceiptContent.legalAid(
    seq: 3, institution: "330782-H01", deviceID: "KSK-TEST-0001", time: vectorTime,
    cardNumber: "3307820000000025", holderName: "李建国", matterCode: "labor_remuneration", matterName: "请求支付劳动报酬")

/// receipt.md §1's worst cases (vectors' `worst_case_jws_bytes`): a 20-character device id, an 8-digit seq, a
/// 10-digit time, a bill of 99,999,999 fen (all its figures 8 digits), `l` 100,000,000, a 32-character matter code.
let worstCases: [ReceiptContent] = {
    let device = String(repeating: "D", count: 20), t = Date(timeIntervalSince1970: 9_999_999_999), card = "6217000000001234"
    return [
        .subsidy(seq: 99_999_999, institution: "330782-H01", deviceID: device, time: t, cardNumber: card, holderName: "王秀英",
                 billFen: 99_999_999, subsidyFen: 50_000_000, patientPaysFen: 49_999_999, allowanceLeftFen: 100_000_000),
        .reversal(seq: 99_999_999, institution: "330782-H01", deviceID: device, time: t, cardNumber: card, holderName: "王秀英",
                  reversedSeq: 99_999_998, amountFen: 99_999_999, reason: "收费处撤销账单"),
        .legalAid(seq: 99_999_999, institution: "330782-H01", deviceID: device, time: t, cardNumber: card, holderName: "李建国",
                  matterCode: String(repeating: "z", count: 32), matterName: "请求支付劳动报酬"),
    ]
}()

/// A fresh temporary folder per test.
func temporaryFolder() throws -> URL {
    Scratch.folder("receipts")
}

/// What `zbarimg -q --raw --nodbus -Sbinary` reads from a PNG: exact bytes.
func zbarScan(_ png: Data) throws -> [UInt8] {
    let folder = try temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let file = folder.appendingPathComponent("qr.png")
    try png.write(to: file)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/zbarimg")
    process.arguments = ["-q", "--raw", "--nodbus", "-Sbinary", file.path]
    // Output into a file and the wait bounded: a stuck zbarimg fails this test, not the run.
    let outFile = folder.appendingPathComponent("qr.out")
    FileManager.default.createFile(atPath: outFile.path, contents: nil)
    let out = try FileHandle(forWritingTo: outFile)
    defer { try? out.close() }
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw DeadlineExceeded("end of zbarimg", seconds: 60)
    }
    process.waitUntilExit()
    let bytes = [UInt8](try Data(contentsOf: outFile))
    try #require(process.terminationStatus == 0, "zbarimg found no code (exit \(process.terminationStatus))")
    return bytes   // with -Sbinary, --raw adds no newline: exactly the symbol's bytes

}

/// The printer side of `DLE EOT`: answers status queries met before any receipt byte, records the rest.
struct FakePrinterProtocol: Sendable {
    /// Reply to `DLE EOT n` by n; a query without a reply here is never answered.
    var replies: [UInt8: UInt8]
    private(set) var queries: [UInt8] = []
    private(set) var printed: [UInt8] = []
    private var pending: [UInt8] = []
    private var printing = false

    init(replies: [UInt8: UInt8]) { self.replies = replies }

    /// Takes bytes from the host; returns what to answer.
    mutating func take(_ bytes: [UInt8]) -> [UInt8] {
        if printing { printed += bytes; return [] }
        pending += bytes
        var answer: [UInt8] = []
        while !pending.isEmpty {
            if pending[0] == 0x10 {
                if pending.count < 3 { break }
                if pending[1] == 0x04 {
                    queries.append(pending[2])
                    if let reply = replies[pending[2]] { answer.append(reply) }
                    pending.removeFirst(3)
                    continue
                }
            }
            printing = true
            printed += pending
            pending = []
        }
        return answer
    }

    static let ok: [UInt8: UInt8] = [1: 0x12, 2: 0x12, 4: 0x12]
    /// Offline at paper end, paper sensor 'paper end' (bits 5–6).
    static let paperEnd: [UInt8: UInt8] = [1: 0x1A, 2: 0x32, 4: 0x72]
    /// Offline with the cover open.
    static let coverOpen: [UInt8: UInt8] = [1: 0x1A, 2: 0x16, 4: 0x12]
}

/// A receipt printer on 127.0.0.1 (ephemeral port) serving one connection on its own thread; every wait bounded.
final class FakeTCPPrinter: Sendable {
    let port: UInt16
    private let listener: Int32
    private let state: Mutex<FakePrinterProtocol>
    private let finished = DispatchSemaphore(value: 0)

    init(replies: [UInt8: UInt8]) throws {
        state = Mutex(FakePrinterProtocol(replies: replies))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        try #require(bound == 0 && listen(fd, 1) == 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    private func waitReadable(_ fd: Int32, ms: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, ms) > 0
    }

    private func serve() {
        defer { close(listener); finished.signal() }
        guard waitReadable(listener, ms: 5000) else { return }
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return }
        defer { close(connection) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while waitReadable(connection, ms: 5000) {
            let n = buffer.withUnsafeMutableBytes { read(connection, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            let answer = state.withLock { $0.take(Array(buffer[0..<n])) }
            if !answer.isEmpty { _ = answer.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) } }
        }
    }

    /// Waits (at most 5 s) for the connection to end, then returns what was printed and asked.
    func result() throws -> (printed: [UInt8], queries: [UInt8]) {
        try #require(finished.wait(timeout: .now() + 5) == .success, "the fake printer did not finish")
        return state.withLock { ($0.printed, $0.queries) }
    }
}

/// A receipt printer behind a pseudo-terminal: `path` is the device the transport opens.
final class FakeDevicePrinter: Sendable {
    let path: String
    private let master: Int32
    private let keepalive: Int32
    private let state: Mutex<FakePrinterProtocol>
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(replies: [UInt8: UInt8]) throws {
        state = Mutex(FakePrinterProtocol(replies: replies))
        master = PTY.openMaster()
        try #require(master >= 0 && PTY.grant(master) == 0 && PTY.unlock(master) == 0)
        var name = [CChar](repeating: 0, count: 128)
        try #require(PTY.name(master, &name, name.count) == 0)
        path = String(cString: name)
        keepalive = open(path, O_RDWR | O_NOCTTY)   // so the master never sees a hang-up between opens
        try #require(keepalive >= 0)
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    private func serve() {
        defer { finished.signal() }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let stop = stopping.load(ordering: .acquiring)
            var p = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 20) > 0 {
                let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
                if n > 0 {
                    let answer = state.withLock { $0.take(Array(buffer[0..<n])) }
                    if !answer.isEmpty { _ = answer.withUnsafeBytes { write(master, $0.baseAddress, $0.count) } }
                    continue
                }
            }
            if stop { return }
        }
    }

    /// Stops after reading everything already written, then returns what was printed and asked.
    func result() throws -> (printed: [UInt8], queries: [UInt8]) {
        stopping.store(true, ordering: .releasing)
        try #require(finished.wait(timeout: .now() + 5) == .success, "the fake device did not finish")
        close(keepalive)
        close(master)
        return state.withLock { ($0.printed, $0.queries) }
    }
}

/// glibc's pseudo-terminal calls, which the Glibc module does not import (they need `_XOPEN_SOURCE`).
enum PTY {
    private static func symbol<T>(_ name: String, as type: T.Type) -> T {
        guard let pointer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { fatalError("libc lacks \(name)") }
        return unsafeBitCast(pointer, to: type)
    }

    static func openMaster() -> Int32 {
        symbol("posix_openpt", as: (@convention(c) (Int32) -> Int32).self)(O_RDWR | O_NOCTTY)
    }

    static func grant(_ fd: Int32) -> Int32 { symbol("grantpt", as: (@convention(c) (Int32) -> Int32).self)(fd) }

    static func unlock(_ fd: Int32) -> Int32 { symbol("unlockpt", as: (@convention(c) (Int32) -> Int32).self)(fd) }

    static func name(_ fd: Int32, _ buffer: UnsafeMutablePointer<CChar>, _ length: Int) -> Int32 {
        symbol("ptsname_r", as: (@convention(c) (Int32, UnsafeMutablePointer<CChar>, Int) -> Int32).self)(fd, buffer, length)
    }
}
