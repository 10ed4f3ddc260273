import KioskProtocol
import ArgumentParser
import Foundation
import SystemdSupport
import Hummingbird
import HummingbirdCore
import KioskCore
import KioskStore
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Settlement
import SmartCard

/// `--paper 58|80`: anything else is a usage error (exit 64), never another width.
extension DeviceConfig.PaperWidth: ExpressibleByArgument {}

/// The kiosk daemon: reader watcher and card sessions, settlement upload, the local HTTP
/// server for the screen, the bill intake, health and metrics; one ServiceGroup that
/// shuts down gracefully on SIGTERM.
@main
struct KioskDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kioskd", abstract: "BenefitKiosk daemon.")

    @Option(help: "State folder (default /var/lib/benefit-kiosk, or BENEFIT_KIOSK_STATE_DIR).") var stateDir: String?
    @Option(help: "HTTP port on 127.0.0.1 (screen, bill intake, health, metrics).") var port = 8080
    @Flag(help: "Use vpcd's virtual readers (demo, tests, training). Also BENEFIT_KIOSK_VIRTUAL_READERS=1.") var virtualReaders = false
    @Flag(help: "Do not upload settlement records (a kiosk with no network yet).") var noUpload = false
    @Flag(help: "Do not sync snapshots from the hub (they change only by kioskctl snapshot install).") var noSync = false
    @Option(help: "Receipt paper width in mm, 58 or 80 (default: the device configuration's, set by kioskctl provision --paper).")
    var paper: DeviceConfig.PaperWidth?
    @Option(help: "Use only this reader (default: the device configuration's, set by kioskctl provision --reader; else every reader, virtual ones only with --virtual-readers).")
    var reader: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"
    @Flag(help: "Log every APDU exchanged with a card (notice level), card and phone numbers, names and signatures masked: for diagnosing a card in the field.")
    var traceAPDU = false
    @Option(help: "Where to keep the screen's one-time URL (default: STATE/screen-url; the unit uses /run/benefit-kiosk/screen-url, group kiosk-screen).")
    var screenURLFile: String?
    @Option(help: "Write the screen's pages for a set of sample states into this folder and exit (screenshots, accessibility checks, training).")
    var previewScreens: String?

    func run() async throws {
        if let previewScreens {
            let names = try ScreenPreviews.write(into: URL(fileURLWithPath: previewScreens))
            print(names.joined(separator: "\n"))
            return
        }
        let registry = bootstrapObservability()
        var logger = Logger(label: "kioskd")
        let dir = URL(fileURLWithPath: stateDir ?? ProcessInfo.processInfo.environment["BENEFIT_KIOSK_STATE_DIR"] ?? "/var/lib/benefit-kiosk")
        let device: Device
        do { device = try Device(stateDir: dir) } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(6)
        }
        logger[metadataKey: "device"] = "\(device.config.deviceID)"
        let clock = try KioskClock.fromEnvironment()
        let kiosk = Kiosk(device: device, clock: clock, logger: logger)
        var filter = virtualReaders ? ReaderFilter(allowVirtual: true) : ReaderFilter.fromEnvironment
        filter.only = reader ?? device.config.reader
        let settings = device.config.screenSettings
        let hub = ScreenHub(ScreenState(profile: device.config.profile.rawValue, institution: settings.displayName ?? "",
                                        deviceID: device.config.deviceID, helpDesk: settings.helpDesk, helpPhone: settings.helpPhone,
                                        voiceOn: settings.voice, volume: settings.volume))
        let feed = ScreenFeed()
        let engine = Engine(kiosk: kiosk, feed: feed, filter: filter, logger: logger,
                            receipts: ReceiptDesk(device: device, paper: paper?.paper), traceAPDU: traceAPDU)

        try Self.logStartUpState(device: device, kiosk: kiosk, clock: clock, logger: logger)

        // Issue 20: a bill open when the last process stopped had its patient's identity number
        // only in that process's memory: it ends cancelled (kiosk_restarted), and the hospital
        // system posts it again.
        let ended = try device.store.endOpenBills(now: clock.now())
        if !ended.isEmpty {
            logger.notice("bills open at the last stop ended cancelled (kiosk_restarted)", metadata: ["bills": "\(ended)"])
        }
        try await engine.reopenPending()
        if device.config.profile == .hospital && device.billAPIToken == nil {
            logger.error("no bill API token: the bill API refuses every request (401) until kioskctl bill-api-token --create")
        }
        // Descriptors: the unit sets LimitNOFILE; started by hand, take what the hard limit allows.
        let files = FileLimit.raise(to: 8192)
        logger.info("open files", metadata: ["limit": "\(files)"])

        let presence = PatientPresence()
        var services: [any Service] = [ReaderService(engine: engine, filter: filter, logger: logger, presence: presence),
                                       RetentionService(store: device.store, now: { clock.now() }, logger: logger)]
        let extras = try extraServices(device: device, engine: engine, clock: clock, logger: logger, upload: !noUpload, sync: !noSync,
                                       presence: presence)
        services += extras.services
        if let interval = SDNotify.watchdogInterval {
            // Fed only while the store answers a read, the card worker's queue answers and the
            // HTTP server answers on loopback, each within a quarter of the interval.
            services.append(WatchdogService(interval: interval, checks: [
                Liveness.store(device), Liveness.cardWorker(engine), Liveness.http(port: port, timeout: interval / 4),
            ], logger: logger, status: "serving on 127.0.0.1"))
        }
        // Issue 20 item 6: the screen's session and its one-time URL (kioskctl screen-url).
        let session = try ScreenSession(stateDir: device.stateDir, port: port,
                                        urlFile: screenURLFile.map { URL(fileURLWithPath: $0) })
        services.append(ScreenURLService(session: session))
        let router = buildRouter(engine: engine, hub: hub, device: device, registry: registry, port: port, session: session,
                                 sync: extras.sync)
        let app = Self.httpServer(router: router, port: port, logger: logger)
        // Started in this order, shut down in reverse: the screen streams close first, then
        // the HTTP server drains, then the uploader and the reader watcher stop.
        let group = ServiceGroup(configuration: .init(services: services + [app, ScreenService(hub: hub, feed: feed)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        SDNotify.send("STOPPING=1")
        logger.notice("kioskd stopped")
    }

    /// Bootstraps logging at `--log-level` (to standard error) and the Prometheus metrics; returns the registry.
    private func bootstrapObservability() -> PrometheusCollectorRegistry {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        // Priorities for journald when stderr is the journal (issue 23 item 4), plain lines otherwise.
        JournalLogHandler.bootstrap(level: level)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// Logs what start-up finds: pending deductions, the certificate, the clock and the installed snapshot.
    private static func logStartUpState(device: Device, kiosk: Kiosk, clock: KioskClock, logger: Logger) throws {
        // Start-up: say what is pending; each resolves when its card is presented again.
        for d in try device.store.pendingDeductions() where (Timestamp.date(d.createdAt) ?? .distantPast) < clock.now().addingTimeInterval(-60) {
            logger.warning("pending deduction from before start-up: present the card to resolve it", metadata: [
                "deduction": "\(d.id)", "card": "\(d.cardNumber.prefix(4))********\(d.cardNumber.suffix(4))", "since": "\(d.createdAt)"])
        }
        // The device certificate (card spec §5.2): warned about 30 days before it runs out;
        // without a valid one every subsidy is device_retired.
        if let warning = kiosk.certificateWarning(now: clock.now()) {
            logger.warning("device certificate", metadata: ["warning": "\(warning)"])
        }
        if let why = try device.store.clockFloor().suspicion(at: clock.now()) {
            logger.error("device clock suspect: no subsidies until it reads sensibly (kioskctl clock reset after setting it)", metadata: ["why": "\(why)"])
        }
        if let s = try device.store.installedSnapshot() {
            logger.info("snapshot", metadata: ["id": "\(s.header.snapshotID)", "expires": "\(s.header.expiresAt)"])
        } else {
            logger.warning("no snapshot installed: every decision is snapshot_missing until kioskctl snapshot install")
        }
    }

    /// The HTTP server on 127.0.0.1:`port` for `router`, which logs "kioskd ready" and tells systemd once it listens.
    private static func httpServer(router: Router<BasicRequestContext>, port: Int, logger: Logger) -> QuietServer {
        let readyLogger = logger
        // Idle connections (no request in progress) close after 30 s; headers are bounded.
        return QuietServer(router: router,
                           server: .http1(configuration: .init(idleTimeout: .seconds(30), httpDecoderConfiguration: .init(
                               maxHeaderFieldSize: 8 * 1024, maxHeaderListSize: 16 * 1024, maxHeaderFieldCount: 64))),
                           configuration: ServerConfiguration(address: .hostname("127.0.0.1", port: port), serverName: "kioskd"),
                           onServerRunning: { channel in
                               readyLogger.notice("kioskd ready", metadata: ["http": "\(channel.localAddress?.description ?? "")"])
                               SDNotify.send("READY=1\nSTATUS=serving on 127.0.0.1")
                           }, logger: logger)
    }
}
