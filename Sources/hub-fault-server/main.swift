import ArgumentParser
import Foundation
import HubFaults
import HubHTTP
import HubStore
import Logging
import PlatformCommandLine
import ServiceLifecycle

/// Test support: a reference hub with its fault knobs (`HubFaults`), for the tests that need
/// a misbehaving hub as a separate process (one to kill while it holds a batch's answer).
/// Never packaged or installed: `settlement-hub` has no knobs.
@main
struct HubFaultServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub-fault-server",
        abstract: "TEST ONLY: a reference hub that misbehaves on purpose (never installed on a platform machine).")

    @Option(help: "Port on 127.0.0.1 (0: any free port; the chosen one is printed).") var port = 0
    @OptionGroup var storage: HubStorageOptions
    @Option(help: "Roster: a snapshot-format file; repeatable.") var snapshot: [String] = []
    @Option(help: "Most records per batch.") var maxRecords = 500
    @Option(help: "Wait this many milliseconds after storing a batch, before answering.") var delayMs = 0
    @Option(help: "Misbehave on the first N batch requests.") var failFirst = 0
    @Option(help: "The status those requests get.") var failStatus = 503
    @Flag(help: "Store those batches, then answer --fail-status (the answer is lost).") var failAfterStore = false

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .error
            return h
        }
        var roster = Roster()
        for path in snapshot { try roster.load(snapshot: path) }
        let database = try storage.open()
        let faults = HubFaults(failFirst: failFirst, failure: failAfterStore ? .storeThenStatus(failStatus) : .status(failStatus, retryAfter: nil),
                               delay: .milliseconds(delayMs))
        let hub = SettlementHub(database: database, roster: roster, limits: HubLimits(maxRecords: maxRecords), faults: faults)
        let app = try hub.makeApplication(host: "127.0.0.1", port: port) { port in
            let line = "hub-fault-server listening on http://127.0.0.1:\(port)\n"
            _ = line.utf8CString.withUnsafeBufferPointer { write(1, $0.baseAddress, $0.count - 1) }
        }
        let group = ServiceGroup(configuration: .init(services: [database.service, app], gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: Logger(label: "hub-fault-server")))
        try await group.run()
    }
}
