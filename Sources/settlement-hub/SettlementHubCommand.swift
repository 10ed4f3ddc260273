import KioskProtocol
import ArgumentParser
import Crypto
import Foundation
import SystemdSupport
import Synchronization
import Hummingbird
import HummingbirdTLS
import Logging
import ServiceLifecycle
import HubHTTP
import HubStore
import PlatformCommandLine

/// `settlement-hub`: the reference settlement hub (upload spec §2–3, sync spec §2–3), for
/// development, training and tests. Production hubs are the platform's.
@main
struct SettlementHubTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settlement-hub",
        abstract: "Reference settlement hub: takes record batches from kiosks and serves them snapshots.",
        subcommands: [SettlementHubCommand.self, PublishCommand.self, MigrateCommand.self],
        defaultSubcommand: SettlementHubCommand.self
    )
}

/// `settlement-hub migrate`: the schema created or brought up to date, by the tables' owner
/// (province set-up); `--grant-to ROLE` then gives the hub processes' role its privileges.
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or update the hub's tables (as their owner); with --grant-to, give the hubs' PostgreSQL role what it needs and no more."
    )
    @OptionGroup var storage: HubStorageOptions
    @Option(help: "PostgreSQL: the role the hub processes log in as (read the roster, insert records and the roster-change inbox; never edit, delete or own a table).")
    var grantTo: String?
    @Option(help: "PostgreSQL: the role the publisher logs in as (read everything; write the roster, certificates and shelf; never a record; owns no table).")
    var grantPublisher: String?

    func run() throws {
        let database: HubDatabase
        do { database = try storage.open() } catch {
            FileHandle.standardError.write(Data("settlement-hub migrate: cannot open \(storage.name): \(error)\n".utf8))
            throw ExitCode(3)
        }
        defer { database.close() }
        print("\(storage.name): tables up to date")
        guard let grantTo else { return }
        do { try database.grant(hubRole: grantTo, publisherRole: grantPublisher) } catch {
            FileHandle.standardError.write(Data("settlement-hub migrate: cannot grant to \(grantTo): \(error)\n".utf8))
            throw ExitCode(3)
        }
        print("\(grantTo): may read and insert records and answers, never edit or delete them, and owns no table")
        if let grantPublisher {
            print("\(grantPublisher): may read everything and write the roster, certificates and shelf, never a record, and owns no table")
        }
    }
}

/// `settlement-hub publish FILE`: puts a signed snapshot on the hub's shelf for kiosks to sync
/// (sync spec §2–3). The hub verifies no signature (it holds no authority key); the kiosks'
/// installers do.
struct PublishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish a signed snapshot file (full or delta) for the kiosks of its region to sync."
    )
    @OptionGroup var storage: HubStorageOptions
    @Argument(help: "The snapshot file (JSON Lines, snapshot spec v2).") var file: String

    func run() throws {
        let database: HubDatabase
        let db = storage.name
        do { database = try storage.open() } catch {
            FileHandle.standardError.write(Data("settlement-hub publish: cannot open \(db): \(error)\n".utf8))
            throw ExitCode(3)
        }
        do {
            let p = try database.publishSnapshot(file: URL(fileURLWithPath: file), now: Date())
            print("published \(p.snapshotID) (\(p.kind)\(p.baseSnapshotID.map { " on \($0)" } ?? ""), region \(p.region), \(p.bytes) bytes, sha256 \(p.sha256))")
        } catch let e as PublishError {
            FileHandle.standardError.write(Data("settlement-hub publish: refused: \(e)\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// `settlement-hub serve` (the default): the hub itself.
struct SettlementHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Reference settlement hub: receives signed record batches from kiosks, checks them, stores each record once.",
        discussion: """
        The roster (programs, devices with institution and status, persons, cards with person_ref and \
        public_key) comes from snapshot-format files, version 2 (--snapshot); --device ID=BASE64[,INSTITUTION] \
        adds an active device. Records are checked as upload spec v2 §5 says. Stops gracefully on SIGTERM or SIGINT. \
        The --fail-*, --delay-ms, --nonsense and --fractional-received-at options make the hub misbehave \
        on purpose, for tests and training only.
        """
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port; the chosen one is printed).") var port = 8470
    @OptionGroup var storage: HubStorageOptions
    @Option(help: "Roster: a snapshot-format file, version 2 (JSON lines: programs, devices, persons, cards with public_key); repeatable.")
    var snapshot: [String] = []
    @Option(help: "An active device to register: ID=BASE64[,INSTITUTION] (Ed25519 public key); repeatable.") var device: [String] = []
    @Option(help: "A trusted roster key (the civil-affairs office's), KEY_ID=BASE64: roster changes posted to the hub must verify with one; repeatable.")
    var rosterKey: [String] = []
    @Option(help: "Most records per batch (more: 413).") var maxRecords = 500
    @Option(help: "Most bytes per batch (more: 413).") var maxBytes = 1 << 20
    @Option(help: "HTTPS: the hub's certificate chain (PEM). With --tls-key.") var tlsCert: String?
    @Option(help: "HTTPS: the private key of --tls-cert (PEM).") var tlsKey: String?
    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical).") var logLevel = "info"
    @Option(help: "When kiosks that sign legal-aid applications were rolled out (YYYY-MM-DDTHH:MM:SSZ): an application without the card's consent made before it is accepted flagged no_card_auth; after it, or with no consent start, it is refused bad_card_auth.")
    var consentStart: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard (1...500).contains(maxRecords) else { throw ValidationError("--max-records must be 1…500") }
        guard maxBytes >= 1024 else { throw ValidationError("--max-bytes must be at least 1024") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level \(logLevel)") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if snapshot.isEmpty && device.isEmpty { throw ValidationError("register devices with --snapshot and/or --device") }
        if let consentStart, Timestamp.date(consentStart) == nil { throw ValidationError("--consent-start is YYYY-MM-DDTHH:MM:SSZ") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        // Priorities for journald when stderr is the journal (issue 23 item 4), plain lines otherwise.
        JournalLogHandler.bootstrap(level: level)
        var roster = Roster()
        do {
            for path in snapshot { try roster.load(snapshot: path) }
            for option in device { try roster.add(option: option) }
        } catch {
            throw ValidationError("\(error)")
        }
        let database: HubDatabase
        do { database = try storage.open() } catch { throw ValidationError("cannot open \(storage.name): \(error)") }
        let rosterKeys: RosterKeys
        do { rosterKeys = try RosterChange.keys(options: rosterKey) } catch { throw ValidationError("\(error)") }
        let hub = SettlementHub(database: database, roster: roster, limits: HubLimits(maxRecords: maxRecords, maxBytes: maxBytes),
                                faults: nil, rosterKeys: rosterKeys, consentStart: consentStart.flatMap(Timestamp.date))
        let host = self.host
        let devices = roster.devices.count, cards = roster.cards.count
        var tls: TLSConfiguration?
        if let tlsCert, let tlsKey {
            do { tls = try SettlementHub.tlsConfiguration(certificateChain: tlsCert, privateKey: tlsKey) } catch {
                throw ValidationError("cannot load --tls-cert/--tls-key: \(error)")
            }
        }
        let scheme = tls == nil ? "http" : "https"
        let bound = BoundPort()
        let app = try hub.makeApplication(host: host, port: port, tls: tls) { port in
            // One write(2) to standard output, unbuffered: the test harness waits for this line.
            let line = "settlement-hub listening on \(scheme)://\(host):\(port) (\(devices) devices, \(cards) cards)\n"
            _ = line.utf8CString.withUnsafeBufferPointer { write(1, $0.baseAddress, $0.count - 1) }
            bound.port.withLock { $0 = port }
            // systemd (Type=notify, issue 23 item 4): ready once listening.
            SDNotify.send("READY=1\nSTATUS=serving on \(scheme)://\(host):\(port)")
        }
        // SIGTERM/SIGINT: long polls are answered at once, then the server drains and stops.
        // The database first, so it stops last: its pool closes after the server has drained.
        var services: [any Service] = [database.service, app, ShutdownNotice(hub: hub)]
        if let interval = SDNotify.watchdogInterval {
            // Fed only while the database answers a read and the server answers on its port,
            // each within a quarter of the interval.
            services.append(WatchdogService(interval: interval, checks: [
                HubLiveness.database(database), HubLiveness.http(host: host, bound: bound, timeout: interval / 4),
            ], logger: Logger(label: "settlement.hub"), status: "serving"))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: Logger(label: "settlement.hub")))
        try await group.run()
    }
}

/// Tells the hub (and systemd: `STOPPING=1`) that graceful shutdown began (started after the
/// server, so told first).
struct ShutdownNotice: Service {
    let hub: SettlementHub
    func run() async throws {
        try? await gracefulShutdown()
        SDNotify.send("STOPPING=1")
        hub.beginShutdown()
    }
}

/// The port the server listens on, once it does (port 0 chooses one).
final class BoundPort: Sendable {
    let port = Mutex<Int?>(nil)
}

/// What the hub needs to be alive, for the systemd watchdog (issue 23 item 4).
enum HubLiveness {
    /// The database answers `SELECT 1` (off the request tasks, as every blocking call).
    static func database(_ database: HubDatabase) -> LivenessCheck {
        LivenessCheck(name: "database") { done in
            DispatchQueue.global().async { done(((try? database.engine.read { c in try c.int("SELECT 1") }) ?? nil) == 1) }
        }
    }

    /// The server answers on its port: a request to a path it does not serve gets its `404`
    /// (the event loop accepts, reads and writes; nothing touches the database). With TLS,
    /// the connection is accepted.
    static func http(host: String, bound: BoundPort, timeout: Duration) -> LivenessCheck {
        LivenessCheck(name: "http") { done in
            DispatchQueue.global().async {
                guard let port = bound.port.withLock({ $0 }) else { done(false); return }
                // Any answer will do: plain HTTP answers 404, a TLS hub answers with TLS bytes.
                done(Liveness.selfRequest(host: host == "0.0.0.0" ? "127.0.0.1" : host, port: port, path: "/v1/alive", timeout: timeout) != nil)
            }
        }
    }
}
