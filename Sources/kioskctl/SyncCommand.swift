import AsyncHTTPClient
import ArgumentParser
import Foundation
import KioskCore
import KioskStore
import Logging
import Settlement

/// What a command that talks to the hub needs: the device, its clock, an environment on that
/// clock and an HTTP client that trusts the provisioned hub CA. Fails the command with the
/// right exit status when any of them cannot be had.
struct HubAccess {
    let device: Device
    let clock: KioskClock
    let environment: UploaderEnvironment
    let client: HTTPClient

    init(_ state: StateOptions, for command: some ParsableCommand) throws {
        func fail(_ f: CommandFailure) throws -> Never { try command.fail(f) }
        do {
            device = try state.device()
            clock = try KioskClock.fromEnvironment()
        } catch let f as CommandFailure { try fail(f)
        } catch { try fail(CommandFailure(message: "\(error)", status: .usage)) }
        do { client = try Uploader.httpClient(hubCAPEM: device.config.hubCAPEM) } catch {
            try fail(CommandFailure(message: "\(error); provision again with a valid --hub-ca", status: .notReady))
        }
        var environment = UploaderEnvironment.live
        environment.now = clock.now
        self.environment = environment
    }

    /// The sync configuration of the provisioned hub URL and region.
    func syncConfiguration(for command: some ParsableCommand) throws -> SyncConfiguration {
        do { return try SyncConfiguration(hubURL: device.config.hubURL, region: device.config.region) } catch {
            try command.fail(CommandFailure(message: "\(error); provision again", status: .notReady))
        }
    }
}

extension Snapshot {
    /// `kioskctl snapshot sync`: one sync round now (sync spec §4), saying what it installed.
    struct Sync: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the hub for newer snapshots now and install them (one sync round).",
            discussion: """
            Exits 0 when the kiosk is up to date (what was installed is listed). The hub unreachable or busy: \
            exit 5. The hub refuses the device or answers nonsense, or a file is refused: exit 8. Kiosk \
            storage: exit 7. No region (no snapshot installed and none provisioned): exit 6. The installed \
            snapshot is never touched by a failed round.
            """
        )
        @OptionGroup var state: StateOptions
        @Option(help: "Long poll: let the hub hold the request up to this many seconds for something newer (0–300).") var wait = 0
        @Option(help: "Request timeout in seconds (beyond --wait).") var timeout = 30
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard (0...300).contains(wait) else { throw ValidationError("--wait must be 0…300 seconds") }
            guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1…600 seconds") }
        }

        func run() throws {
            let hub = try HubAccess(state, for: self)
            let device = hub.device
            var config = try hub.syncConfiguration(for: self)
            config.requestTimeout = .seconds(timeout)
            let (client, environment) = (hub.client, hub.environment)
            var logger = Logger(label: "kioskctl.sync")
            logger.logLevel = .error
            let sync = SnapshotSync(store: device.store, device: device.context, signingKey: device.signingKey,
                                    trustedAuthorities: device.trustedAuthorities, directory: device.stateDir.appendingPathComponent("sync"),
                                    configuration: config, httpClient: client, environment: environment, logger: logger)
            let wait = self.wait
            let round = blockingAwait { await sync.round(wait: wait) }
            let installed = round.installed.map(\.header.snapshotID)
            if json {
                var o: [String: Any] = ["installed": round.installed.map { ["snapshot_id": $0.header.snapshotID, "kind": $0.header.kind,
                                                                            "records": $0.records] }]
                if let latest = round.latest { o["latest"] = latest }
                if let f = round.failure { o["failure"] = ["code": f.code, "message": f.description] }
                printJSON(o)
            } else {
                for r in round.installed {
                    print("installed \(r.header.snapshotID) (\(r.header.kind), \(r.records) records), expires \(r.header.expiresAt)")
                }
                if round.failure == nil && installed.isEmpty { print("up to date: nothing newer on the hub") }
            }
            guard let failure = round.failure else { return }
            let status: ExitStatus
            switch failure {
            case .unreachable, .timedOut, .serverError, .throttled: status = .serviceUnavailable
            case .store: status = .storage
            case .noRegion, .notPublished: status = .notReady
            default: status = .refused
            }
            try fail(CommandFailure(message: failure.description + (installed.isEmpty ? "" : " (installed before that: \(installed.joined(separator: ", ")))"),
                                status: status))
        }
    }
}

extension Certificate {
    /// `kioskctl certificate renew`: one renewal round through the hub now (sync spec §5).
    struct Renew: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch a renewed device certificate from the hub, or ask for one (when under 30 days are left, or with --force).",
            discussion: "Exits 0 when nothing was due, a request was taken, or a new certificate was installed; 8 when the hub's certificate is refused or the hub refuses the device; 5 when the hub cannot be reached."
        )
        @OptionGroup var state: StateOptions
        @Flag(help: "Ask even with more than 30 days left.") var force = false

        func run() throws {
            let hub = try HubAccess(state, for: self)
            let (device, clock, config, client, environment) = (hub.device, hub.clock, try hub.syncConfiguration(for: self), hub.client, hub.environment)
            let renewal = CertificateRenewal(configuration: config, device: device.context, signingKey: device.signingKey,
                                             httpClient: client, environment: environment)
            let (force, current, now) = (self.force, device.certificate?.notAfter, clock.now())
            let outcome = blockingAwait {
                await renewal.round(notAfter: current, force: force) { bytes in
                    let cert = try device.installCertificate(bytes, now: now)
                    return (cert.notAfter, "\(cert.caKeyID), valid \(cert.validFrom) to \(cert.validThrough)")
                }
            }
            print(outcome.description)
            switch outcome {
            case .notDue, .requested, .installed: return
            case .refused: try fail(CommandFailure(message: outcome.description, status: .refused))
            case .failed(let f):
                switch f {
                case .unreachable, .timedOut, .serverError, .throttled: try fail(CommandFailure(message: f.description, status: .serviceUnavailable))
                default: try fail(CommandFailure(message: f.description, status: .refused))
                }
            }
        }
    }
}
