import Foundation
import HummingbirdTLS
import KioskCore
import KioskStore
@testable import Settlement
import HubHTTP
import HubStore
import TestVectors
import Testing

/// Upload spec §2: "HTTPS in production; the hub URL and its CA come from provisioning."
/// A hub serving HTTPS with a certificate made here by openssl; the kiosk trusts the
/// provisioned CA and nothing else.
@Suite("HTTPS hub with a provisioned CA")
struct TLSTests {
    /// A CA and a hub certificate it signed (for 127.0.0.1), made with the openssl command.
    struct Certificates {
        let dir: URL
        var caPEM: URL { dir.appendingPathComponent("ca.pem") }
        var hubPEM: URL { dir.appendingPathComponent("hub.pem") }
        var hubKey: URL { dir.appendingPathComponent("hub.key") }

        static func make(_ label: String) async throws -> Certificates {
            let dir = temporaryFolder(label)
            func f(_ name: String) -> String { dir.appendingPathComponent(name).path }
            let steps: [[String]] = [
                ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", "/CN=BenefitKiosk test CA", "-keyout", f("ca.key"), "-out", f("ca.pem")],
                ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", "/CN=127.0.0.1", "-keyout", f("hub.key"), "-out", f("hub.csr")],
                ["x509", "-req", "-in", f("hub.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", f("san.cnf"), "-out", f("hub.pem")],
            ]
            try "subjectAltName=IP:127.0.0.1\n".write(to: dir.appendingPathComponent("san.cnf"), atomically: true, encoding: .utf8)
            for args in steps {
                let child = try KillTests.Child.spawn("/usr/bin/openssl", args, in: dir)
                let status = await child.wait()
                try #require(status == 0, "openssl \(args[0]): \(child.errors)")
            }
            return Certificates(dir: dir)
        }
    }

    func withHTTPSHub(_ certs: Certificates, _ body: (HubFixture) async throws -> Void) async throws {
        let tls = try SettlementHub.tlsConfiguration(certificateChain: certs.hubPEM.path, privateKey: certs.hubKey.path)
        let hub = try await HubFixture.start(tls: tls)
        do { try await body(hub) } catch { await hub.stop(); throw error }
        await hub.stop()
    }

    @Test("the provisioned CA is trusted: accepted over HTTPS; without it (system roots) or with another CA: unreachable, records kept")
    func provisionedCA() async throws {
        let certs = try await Certificates.make("tls")
        let other = try await Certificates.make("tls-other")
        try await withHTTPSHub(certs) { hub in
        #expect(hub.url.hasPrefix("https://127.0.0.1:"))
        let device = try provisionDevice(hubURL: hub.url)
        try queueAlerts(device, 4)

        // System roots only: the test CA is unknown.
        let plain = try await makeUploader(device).drainOnce()
        guard case .unreachable = plain.failure else { Issue.record("expected a TLS failure, got \(String(describing: plain.failure))"); return }
        #expect(plain.queued == 4)
        #expect(try hub.hub.database.recordCount() == 0)

        // Another CA: refused the same way.
        let wrong = try Uploader.httpClient(hubCAPEM: String(contentsOf: other.caPEM, encoding: .utf8))
        let refused = try await makeUploader(device, httpClient: wrong).drainOnce()
        guard case .unreachable = refused.failure else { Issue.record("expected a TLS failure, got \(String(describing: refused.failure))"); return }
        #expect(try device.store.queuedCount() == 4)

        // The provisioned CA: delivered.
        let pinned = try Uploader.httpClient(hubCAPEM: String(contentsOf: certs.caPEM, encoding: .utf8))
        let summary = try await makeUploader(device, httpClient: pinned).drainOnce()
        #expect(summary.outcome == .drained && summary.accepted == 4)
        #expect(try hub.hub.database.recordCount() == 4)
        // Made once per CA text.
        #expect(try Uploader.httpClient(hubCAPEM: String(contentsOf: certs.caPEM, encoding: .utf8)) === pinned)
        }
    }

    @Test("text without a certificate is not a CA")
    func notACA() {
        #expect(throws: HubCAError.self) { try Uploader.hubCertificates(pem: "hello") }
        #expect(throws: HubCAError.self) { try Uploader.httpClient(hubCAPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") }
    }

    @Test("kioskctl provision --hub-ca, then kioskctl upload over HTTPS; a bad --hub-ca is refused")
    func kioskctlWithHubCA() async throws {
        let kioskctl = try KillTests.kioskctl()
        let certs = try await Certificates.make("tls-ctl")
        try await withHTTPSHub(certs) { hub in
        let dir = temporaryFolder("tls-ctl-state")
        let state = dir.appendingPathComponent("state")
        func provision(_ ca: String) async throws -> KillTests.Child {
            let child = try KillTests.Child.spawn(kioskctl, [
                "provision", "--state-dir", state.path, "--device-id", Fixtures.deviceID, "--institution", "330782-H01",
                "--profile", "hospital", "--hub-url", hub.url, "--hub-ca", ca, "--printer", "none", "--region", "330782", "--device-key-seed", Vectors.seed(Fixtures.deviceID).base64EncodedString(),
            ], in: dir)
            _ = await child.wait()
            return child
        }
        let bad = dir.appendingPathComponent("bad.pem")
        try "not a certificate".write(to: bad, atomically: true, encoding: .utf8)
        let refused = try await provision(bad.path)
        #expect(refused.errors.contains("--hub-ca"), "\(refused.errors)")
        #expect(!FileManager.default.fileExists(atPath: state.appendingPathComponent("device.json").path))

        let ok = try await provision(certs.caPEM.path)
        #expect(ok.output.contains("provisioned"), "\(ok.errors)")
        let device = try Device(stateDir: state)
        #expect(device.config.hubCAPEM == (try String(contentsOf: certs.caPEM, encoding: .utf8)))
        try queueAlerts(device, 3)
        let upload = try KillTests.Child.spawn(kioskctl, ["upload", "--once", "--state-dir", state.path], in: dir)
        #expect(await upload.wait() == 0, "\(upload.errors)")
        #expect(try hub.hub.database.recordCount() == 3)
        #expect(try device.store.queuedCount() == 0)
        }
    }
}
