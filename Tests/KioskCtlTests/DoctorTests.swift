import Foundation
import KioskCore
import TestVectors
import Testing
@testable import kioskctl
#if canImport(Glibc)
import Glibc
#endif

/// `kioskctl doctor` (issue 23 item 2): every check, made to pass and made to fail, against
/// a real store, real files, a real HTTP server on loopback and real printer device files.
/// The checks that need pcscd (the card service stopped, the reader absent, a card that does
/// not answer) are in IntegrationTests/DoctorPCSCTests.
@Suite struct DoctorTests {
    static let at = Date(timeIntervalSince1970: 1_795_316_400)   // 2026-11-22T03:00:00Z
    static let id = "KSK-TEST-0001"

    /// A provisioned device with the vector keys, its certificate and the vector snapshot.
    static func device(printer: String? = nil, hubURL: String = "http://127.0.0.1:9", voice: Bool = false,
                       certificate: Bool = true, snapshot: Bool = true) throws -> Device {
        let dir = try Scratch.makeFolder("doctor")
        let seed = Vectors.devices[id].flatMap { $0["private_seed"] }.flatMap { Data(base64Encoded: $0) }
        var config = DeviceConfig(deviceID: id, institution: "330782-H01", profile: .hospital, issuerKeys: TestDevices.issuerKeys,
                                  authorityKeys: TestDevices.authorityKeys, deviceCAKeys: TestDevices.caKeys, hubURL: hubURL,
                                  printer: printer ?? "file:\(dir.path)/slips/", provisionedAt: "2026-11-22T00:00:00Z", region: "330782")
        var screen = ScreenSettings()
        screen.voice = voice
        config.screen = screen
        let d = try Device.provision(stateDir: dir, config: config, seed: seed, replaceKey: false)
        if certificate { try d.installCertificate(TestDevices.certificate(id), now: at) }
        if snapshot { try d.store.installSnapshot(at: Vectors.url("snapshot-small.jsonl"), trustedAuthorities: d.trustedAuthorities, now: at) }
        return try Device(stateDir: dir)
    }

    /// A machine where everything outside the device is fine: plenty of disk, the screen
    /// service running, a Chinese font, a player that plays.
    static func probe(now: Date = at) -> DoctorProbe {
        var p = DoctorProbe.live
        p.now = { now }
        p.freeBytes = { _ in 50 << 30 }
        p.systemctl = { _ in (0, "active\n") }
        p.chineseFonts = { ["Noto Sans CJK SC"] }
        p.screenPrograms = ["/bin/sh"]
        p.player = "/bin/true"
        p.hubTimeout = .seconds(5)
        return p
    }

    static func run(_ d: Device, _ probe: DoctorProbe = probe(), testPage: Bool = false, sound: Bool = false) async -> [String: Finding] {
        let findings = await DoctorChecks(stateDir: d.stateDir, probe: probe).run(testPage: testPage, sound: sound)
        return Dictionary(findings.map { ($0.check, $0) }) { a, _ in a }
    }

    @Test("certificate: valid with its days left; run out, or none installed, fails")
    func certificate() async throws {
        let d = try Self.device()
        let cert = try #require(d.certificate)
        #expect(await Self.run(d)["certificate"]?.level == .ok)
        let late = await Self.run(d, Self.probe(now: cert.notAfter.addingTimeInterval(3_600)))["certificate"]
        #expect(late?.level == .failed && late?.words.contains("ran out") == true, "\(String(describing: late))")
        let soon = await Self.run(d, Self.probe(now: cert.notAfter.addingTimeInterval(-10 * 86_400)))["certificate"]
        #expect(soon?.level == .warning && soon?.words.contains("renew") == true)
        #expect(await Self.run(try Self.device(certificate: false))["certificate"]?.level == .failed)
    }

    @Test("snapshot: installed and current; none installed, or expired, fails")
    func snapshot() async throws {
        let d = try Self.device()
        let ok = await Self.run(d)["snapshot"]
        #expect(ok?.level == .ok && ok?.words.contains("region 330782") == true, "\(String(describing: ok))")
        #expect(await Self.run(d, Self.probe(now: Self.at.addingTimeInterval(400 * 86_400)))["snapshot"]?.level == .failed)
        #expect(await Self.run(try Self.device(snapshot: false))["snapshot"]?.level == .failed)
    }

    @Test("bill token: a hospital kiosk without one fails; with one (made at provisioning), OK")
    func billToken() async throws {
        let d = try Self.device()
        #expect(await Self.run(d)["bill token"]?.level == .ok, "provisioning makes the token")
        try FileManager.default.removeItem(at: d.stateDir.appendingPathComponent("bill-api.token"))
        #expect(await Self.run(d)["bill token"]?.level == .failed)
        try d.ensureBillAPIToken()
        #expect(await Self.run(d)["bill token"]?.level == .ok)
    }

    @Test("disk: nearly full fails, with what is free and what is needed")
    func disk() async throws {
        let d = try Self.device()
        #expect(await Self.run(d)["disk"]?.level == .ok)
        var full = Self.probe()
        full.freeBytes = { _ in 10 << 20 }
        let f = await Self.run(d, full)["disk"]
        #expect(f?.level == .failed && f?.words.contains("10 MB free") == true, "\(String(describing: f))")
        // The real file system's figure, read by statvfs.
        #expect((DoctorProbe.live.freeBytes(d.stateDir.path) ?? 0) > 0)
    }

    @Test("printer: a device that takes no bytes or is not there fails; a file printer warns; none skips; the test page prints")
    func printer() async throws {
        for spec in ["device:/dev/full", "device:/nonexistent/lp0", "tcp:127.0.0.1:9"] {
            let f = await Self.run(try Self.device(printer: spec))["printer"]
            #expect(f?.level == .failed, "\(spec): \(String(describing: f))")
        }
        #expect(await Self.run(try Self.device(printer: "none"))["printer"]?.level == .skipped)
        let d = try Self.device()
        let found = await Self.run(d, testPage: true)
        #expect(found["printer"]?.level == .warning)
        #expect(found["test page"]?.level == .ok, "\(String(describing: found["test page"]))")
        let slips = d.stateDir.appendingPathComponent("slips")
        let texts = try FileManager.default.contentsOfDirectory(atPath: slips.path).filter { $0.hasSuffix(".txt") }
        let text = try String(contentsOf: slips.appendingPathComponent(try #require(texts.first)), encoding: .utf8)
        #expect(text.contains("打印测试页") && text.contains(Self.id), "\(text)")
    }

    @Test("screen: cage or chromium missing fails, the service not running fails, no systemd skips, no Chinese font fails")
    func screen() async throws {
        let d = try Self.device()
        let ok = await Self.run(d)
        #expect(ok["screen"]?.level == .ok && ok["font"]?.level == .ok)
        var p = Self.probe()
        p.screenPrograms = ["/nonexistent/cage"]
        #expect(await Self.run(d, p)["screen"]?.level == .failed)
        p = Self.probe()
        p.systemctl = { _ in (3, "inactive\n") }
        #expect(await Self.run(d, p)["screen"]?.level == .failed)
        p.systemctl = { _ in nil }
        #expect(await Self.run(d, p)["screen"]?.level == .skipped)
        p.chineseFonts = { [] }
        #expect(await Self.run(d, p)["font"]?.level == .failed)
    }

    @Test("voice: prompts missing fail; all there pass; --sound fails when the player cannot play, passes when it can")
    func voice() async throws {
        let d = try Self.device(voice: true)
        #expect(await Self.run(d)["voice"]?.level == .failed)
        let dir = d.stateDir.appendingPathComponent("voice")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for id in VoicePrompts.catalogue.keys { try Data().write(to: dir.appendingPathComponent("\(id).wav")) }
        #expect(await Self.run(d)["voice"]?.level == .ok)
        #expect(await Self.run(d, sound: true)["sound"]?.level == .ok)
        var p = Self.probe()
        p.player = "/bin/false"
        #expect(await Self.run(d, p, sound: true)["sound"]?.level == .failed)
        p.player = "/nonexistent/aplay"
        #expect(await Self.run(d, p, sound: true)["sound"]?.level == .failed)
        #expect(await Self.run(try Self.device(voice: false))["voice"]?.level == .skipped)
    }

    @Test("the screen's sound output is read from screen.env's KIOSK_ALSA_DEVICE, default otherwise")
    func alsaDevice() async throws {
        let file = try Scratch.makeFolder("doctor-env").appendingPathComponent("screen.env")
        #expect(DoctorChecks.alsaDevice(envFile: file.path) == "default")
        try Data("# comment\nKIOSK_ALSA_DEVICE=\"plughw:CARD=PCH,DEV=0\"\n".utf8).write(to: file)
        #expect(DoctorChecks.alsaDevice(envFile: file.path) == "plughw:CARD=PCH,DEV=0")
    }

    @Test("hub: down fails; answering 200 passes (plain HTTP on loopback warns) and the clock is compared with its Date; a clock 10 minutes off fails; a 503 fails")
    func hub() async throws {
        let down = await Self.run(try Self.device(hubURL: "http://127.0.0.1:9"))["hub"]
        #expect(down?.level == .failed && down?.words.contains("cannot be reached") == true, "\(String(describing: down))")

        let right = try LoopbackHTTP(status: "200 OK", date: Self.at)
        defer { right.stop() }
        let found = await Self.run(try Self.device(hubURL: "http://127.0.0.1:\(right.port)"))
        #expect(found["hub"]?.level == .warning && found["hub"]?.words.contains("plain HTTP") == true, "\(String(describing: found["hub"]))")
        #expect(found["clock"]?.level == .ok, "\(String(describing: found["clock"]))")

        let behind = try LoopbackHTTP(status: "200 OK", date: Self.at.addingTimeInterval(-600))
        defer { behind.stop() }
        let skew = await Self.run(try Self.device(hubURL: "http://127.0.0.1:\(behind.port)"))["clock"]
        #expect(skew?.level == .failed && skew?.words.contains("600 s ahead") == true, "\(String(describing: skew))")

        let busy = try LoopbackHTTP(status: "503 Service Unavailable", date: Self.at)
        defer { busy.stop() }
        #expect(await Self.run(try Self.device(hubURL: "http://127.0.0.1:\(busy.port)"))["hub"]?.level == .failed)
    }

    @Test("not provisioned: the device checks fail in one line saying what to do, the machine's checks still run")
    func notProvisioned() async throws {
        let dir = try Scratch.makeFolder("doctor-none")
        let found = await DoctorChecks(stateDir: dir, probe: Self.probe()).run()
        #expect(found.first { $0.check == "device" }?.words.contains("kioskctl provision") == true)
        #expect(found.contains { $0.check == "font" } && found.contains { $0.check == "screen" })
    }
}

/// An HTTP server on loopback that answers every request with one status and a `Date`
/// header (a hub whose clock may be wrong), closing each connection.
final class LoopbackHTTP: Sendable {
    let port: UInt16
    let fd: Int32

    init(status: String, date: Date) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { close(fd); throw POSIXError(.EADDRINUSE) }
        port = UInt16(bigEndian: addr.sin_port)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let answer = "HTTP/1.1 \(status)\r\nDate: \(f.string(from: date))\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        let listener = fd
        Thread.detachNewThread {
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = read(c, &buffer, buffer.count)
                _ = answer.utf8CString.withUnsafeBufferPointer { write(c, $0.baseAddress, $0.count - 1) }
                close(c)
            }
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
