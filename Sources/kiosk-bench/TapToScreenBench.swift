import ArgumentParser
import Foundation
import SmartCard
import Synchronization
import TestVectors
import VirtualCard
#if canImport(Glibc)
import Glibc
#endif

/// Tap to screen (issue 24 item 3): a running kioskd, its page in headless Chromium, and a
/// card with a real card's timing inserted by this process. Two segments per tap: the card
/// inserted → the pre-settlement on the page, and 确认 posted with the screen's session → the
/// result on the page. Each is reported as the product's ADDED milliseconds: the segment's
/// time less the card's own time in it (what the timed card spent answering). The page
/// stamps each state it puts up (app.js `stamp`); Chromium's log carries the stamps here.
struct TapToScreenBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tap-to-screen",
                                                    abstract: "Card inserted → pre-settlement shown, 确认 → result shown: the product's added ms.")
    @Option(help: "kioskd's port.") var port = 8097
    @Option(help: "kioskd's state folder (the bill token, the screen's one-time URL and session).") var stateDir: String
    @Option(help: "Cards file (cards.json).") var cards = "Provisioning/demo/cards.json"
    @Option var card = "3307820000000017"
    @Option(help: "vpcd port of kioskd's reader.") var vpcdPort: UInt16 = 35963
    @Option(help: "That reader's PC/SC name.") var reader = "Virtual PCD 00 00"
    @Option(help: "Card timing: fast, slow or none.") var timing = "fast"
    @Option var taps = 20
    @Option var chromium = "/usr/bin/chromium"
    @Option(help: "Label printed with the figures (at_rest, under_load …).") var label = "at_rest"
    @Flag(help: "Print every tap's two segments with the wall-clock time (to place a slow tap against a load).") var verbose = false

    func run() throws {
        let state = URL(fileURLWithPath: stateDir)
        func read(_ name: String) throws -> String {
            try String(contentsOf: state.appendingPathComponent(name), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let token = try read("bill-api.token")
        let page = PageStamps()
        let browser = try page.open(chromium: chromium, url: try read("screen-url"))
        defer { kill(browser, SIGTERM) }
        _ = try page.wait("the page's first state", after: 0, timeout: 30) { _ in true }
        let session = try read("screen-session.key")
        let all = try CardDescription.load(from: URL(fileURLWithPath: cards))
        guard let description = all.first(where: { $0.cardNumber == card }) else { throw ValidationError("no card \(card)") }
        // One card for the whole run: each tap writes it, and the kiosk's ledger expects the
        // card's record to have moved on (a fresh copy would be an older card).
        let emulator = try CardEmulator(description: description)
        var toConfirm: [Double] = [], toResult: [Double] = [], cardOwn: [Double] = [], detection: [Double] = [], fromSeen: [Double] = []
        let pcsc = try PCSCContext()
        let run = UInt64(Date().timeIntervalSince1970)
        for i in 1...taps {
            let bill = "TTS-\(run)-\(i)"
            try LoopbackPost.send(port: port, path: "/api/bills", headers: ["Authorization: Bearer \(token)"],
                                  body: "{\"bill_reference\":\"\(bill)\",\"bill_fen\":1}", expect: 202)
            let billShown = try page.wait("bill \(bill) waiting", after: 0, timeout: 30) { $0.bill == bill && $0.phase == "idle" && !$0.card }
            let client = VPCDClient(emulator: emulator, port: vpcdPort, timing: CardTiming.profiles[timing])
            let t0 = Date().timeIntervalSince1970 * 1000
            try client.insert(timeout: 10)
            // When pcscd tells its clients the card is there (kioskd learns it at the same
            // moment): the time before it is vpcd's and pcscd's card detection, not the product's.
            guard try pcsc.waitForCard(in: reader, present: true, timeout: 10) else { throw ValidationError("pcscd never saw the card") }
            let seen = Date().timeIntervalSince1970 * 1000
            let confirm = try page.wait("the pre-settlement", after: billShown.t, timeout: 60) { $0.phase == "confirm" && $0.bill == bill }
            let own1 = client.cardSeconds * 1000
            let t2 = Date().timeIntervalSince1970 * 1000
            try LoopbackPost.send(port: port, path: "/api/bills/\(bill)/confirm", headers: ["Cookie: bk_screen=\(session)"],
                                  body: "{\"confirmation\":\(confirm.confirmation ?? 0)}", expect: 202)
            let result = try page.wait("the result", after: confirm.t, timeout: 60) { $0.phase == "result" && $0.code != nil }
            guard result.code == "granted" else { throw ValidationError("tap \(i): \(result.code ?? "?"), not granted") }
            let own2 = client.cardSeconds * 1000 - own1
            toConfirm.append(confirm.t - t0 - own1)
            detection.append(seen - t0)
            fromSeen.append(confirm.t - seen - own1)
            toResult.append(result.t - t2 - own2)
            cardOwn.append(own1 + own2)
            if verbose {
                print(String(format: "tap %d at %.3f: seen→pre-settlement %.1f ms, 确认→result %.1f ms (added)", i, t2 / 1000,
                             confirm.t - seen - own1, result.t - t2 - own2))
            }
            client.remove()
            _ = try page.wait("the card taken", after: result.t, timeout: 30) { !$0.card }
        }
        Self.report("\(label) card_inserted_to_presettlement_added_ms", toConfirm)
        Self.report("\(label) pcscd_detection_ms", detection)
        Self.report("\(label) card_seen_to_presettlement_added_ms", fromSeen)
        Self.report("\(label) confirm_to_result_added_ms", toResult)
        Self.report("\(label) card_own_ms", cardOwn)
    }

    static func report(_ name: String, _ values: [Double]) {
        let s = values.sorted()
        print(String(format: "screen %@ n=%d p50=%.1f p99=%.1f min=%.1f max=%.1f", name, s.count, s[s.count / 2],
                     s[min(s.count - 1, s.count * 99 / 100)], s[0], s[s.count - 1]))
    }
}

/// One `bk-state` stamp from the page.
struct Stamp: Decodable, Sendable {
    var seq: Int?
    var phase: String
    var code: String?
    var confirmation: Int?
    var bill: String?
    var card: Bool
    var t: Double
}

/// Headless Chromium on the screen's one-time URL; its log's `bk-state` lines as stamps.
final class PageStamps: Sendable {
    private let stamps = Mutex<[Stamp]>([])

    /// Starts Chromium; returns its pid. A thread reads its standard error.
    func open(chromium: String, url: String) throws -> pid_t {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: chromium)
        p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--lang=zh-CN",
                       "--autoplay-policy=no-user-gesture-required", "--user-data-dir=\(NSTemporaryDirectory())tts-\(getpid())", url]
        let pipe = Pipe()
        p.standardError = pipe
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            // The stamps are found in the log as they come, "bk-state {…}" (a flat object),
            // wherever the log's own lines break.
            var pending = ""
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                pending += String(decoding: chunk, as: UTF8.self)
                while let r = pending.range(of: "bk-state {"), let end = pending[r.upperBound...].firstIndex(of: "}") {
                    let json = pending[pending.index(before: r.upperBound)...end]
                    if let s = try? JSONDecoder().decode(Stamp.self, from: Data(json.utf8)) { stamps.withLock { $0.append(s) } }
                    pending = String(pending[pending.index(after: end)...])
                }
                if pending.count > 65_536 { pending = String(pending.suffix(1_024)) }
            }
        }
        return p.processIdentifier
    }

    /// The first stamp after `after` (ms) for which `condition` holds, waiting up to `timeout` s.
    func wait(_ what: String, after: Double, timeout: Double, _ condition: (Stamp) -> Bool) throws -> Stamp {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let s = stamps.withLock({ $0.first { $0.t >= after && condition($0) } }) { return s }
            usleep(2_000)
        }
        throw ValidationError("the page never showed \(what) (last: \(String(describing: stamps.withLock { $0.last })))")
    }
}

/// A POST on loopback with a JSON body, over a plain socket (no client library's start-up in
/// the measured time).
enum LoopbackPost {
    static func send(port: Int, path: String, headers: [String], body: String, expect: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { throw ValidationError("kioskd is not listening on \(port)") }
        let request = (["POST \(path) HTTP/1.1", "Host: 127.0.0.1:\(port)", "Content-Type: application/json",
                        "Content-Length: \(body.utf8.count)", "Connection: close"] + headers).joined(separator: "\r\n") + "\r\n\r\n" + body
        _ = request.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = read(fd, &buffer, buffer.count)
        let head = String(decoding: buffer.prefix(max(0, n)), as: UTF8.self)
        guard head.hasPrefix("HTTP/1.1 \(expect)") else { throw ValidationError("POST \(path): \(head.prefix(200))") }
    }
}
