import Foundation
import KioskCore
@testable import Settlement
import Testing

@Suite("Hub URL policy (upload spec §2)")
struct HubURLTests {
    @Test("https anywhere, http only on loopback", arguments: [
        "https://hub.example.cn", "https://hub.example.cn:8443/base/", "https://10.0.0.5",
        "http://127.0.0.1:8470", "http://127.8.9.10", "http://127.255.255.255/", "http://localhost:8470", "http://LOCALHOST",
        "http://[::1]:8470", "http://[0:0:0:0:0:0:0:1]/", "HTTP://127.0.0.1",
    ])
    func allowed(_ url: String) throws {
        let config = try UploaderConfiguration(hubURL: url)
        #expect(config.hubURL == url)
        #expect(throws: Never.self) { try HubURL.check(url) }
    }

    @Test("plain http to anything but loopback is refused with a typed error", arguments: [
        ("http://hub.example.cn", "hub.example.cn"), ("http://10.0.0.1:8470", "10.0.0.1"), ("http://128.0.0.1", "128.0.0.1"),
        ("http://127.0.0.1.evil.example", "127.0.0.1.evil.example"), ("http://localhost.evil.example", "localhost.evil.example"),
        ("http://127.1", "127.1"), ("http://0177.0.0.1", "0177.0.0.1"), ("http://127.0.0.1@evil.example/", "evil.example"),
        ("http://[::2]", "[::2]"), ("http://[::ffff:7f00:1]", "[::ffff:7f00:1]"),
    ])
    func refused(_ url: String, _ host: String) {
        #expect(throws: HubURLError.plainHTTPNotLoopback(url: url, host: host)) { try UploaderConfiguration(hubURL: url) }
    }

    @Test("not a URL, or another scheme")
    func notHTTP() {
        #expect(throws: HubURLError.notAURL("hub.example.cn")) { try UploaderConfiguration(hubURL: "hub.example.cn") }
        #expect(throws: HubURLError.notAURL("")) { try UploaderConfiguration(hubURL: "") }
        #expect(throws: HubURLError.unsupportedScheme(url: "ftp://127.0.0.1", scheme: "ftp")) { try UploaderConfiguration(hubURL: "ftp://127.0.0.1") }
        #expect(throws: HubURLError.unsupportedScheme(url: "ws://hub.example.cn/", scheme: "ws")) { try HubURL.check("ws://hub.example.cn/") }
        #expect(throws: HubURLError.notAURL("file:///tmp/hub")) { try HubURL.check("file:///tmp/hub") }
        let error = HubURLError.plainHTTPNotLoopback(url: "http://hub.example.cn", host: "hub.example.cn")
        #expect(error.description.contains("https") && error.description.contains("loopback"))
    }

    @Test("a kiosk provisioned with a plain http hub elsewhere gets no uploader")
    func provisionedDeviceRefused() throws {
        let device = try provisionDevice(hubURL: "http://hub.example.cn:8470")
        #expect(throws: HubURLError.self) { try makeUploader(device) }
    }
}
