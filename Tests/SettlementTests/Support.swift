import AsyncHTTPClient
import Crypto
import Foundation
import HubFaults
import Synchronization
import HummingbirdTLS
import KioskCore
import KioskStore
import Logging
import Settlement
import HubHTTP
import HubStore
import TestVectors
import Testing

enum Fixtures {
    static func url(_ name: String) -> URL { Vectors.url(name) }

    static var vectors: [String: Any] { Vectors.json("receipt-and-batch.json") }

    /// Private seed of a test device (test-keys.json).
    static func seed(_ deviceID: String) -> Data { Vectors.seed(deviceID) }

    /// Public key of a test device, base64 (test-keys.json).
    static func publicKey(_ deviceID: String) throws -> String { try Vectors.entry(Vectors.deviceEntry(deviceID), "public_key") }

    static let deviceID = "KSK-TEST-0001"
}

/// A fresh temporary folder per test (GRDB's habit): real SQLite files, nothing shared.
func temporaryFolder(_ label: String = "settlement") -> URL {
    Scratch.folder(label)
}

/// The hub database a test runs on: a fresh SQLite file, or, when `BK_TEST_POSTGRES` names a
/// PostgreSQL database (the test command runs the hub's suites a second time so, against its
/// own throwaway server), a fresh schema of its own there, with a shelf folder of its own.
func testHubDatabase(_ label: String = "hub") throws -> HubDatabase {
    try testHubStore(label)()
}

/// One store that several hub processes share: `open()` opens it again, with connections of
/// its own (SQLite: the same file; PostgreSQL: the same schema and shelf); `arguments` are
/// the `settlement-hub` and `hub-publisher` options that name it.
struct TestHubStore: Sendable {
    let arguments: [String]
    private let opener: @Sendable () throws -> HubDatabase
    init(arguments: [String], opener: @escaping @Sendable () throws -> HubDatabase) {
        self.arguments = arguments
        self.opener = opener
    }
    func open() throws -> HubDatabase { try opener() }
    func callAsFunction() throws -> HubDatabase { try opener() }
}

func testHubStore(_ label: String = "hub") throws -> TestHubStore {
    let folder = temporaryFolder(label)
    guard let base = testPostgresURL else {
        let path = folder.appendingPathComponent("hub.sqlite").path
        return TestHubStore(arguments: ["--db", path]) { try HubDatabase(path: path) }
    }
    let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    try PostgresLocation.createSchema(schema, at: try PostgresLocation(url: base))
    let url = base + (base.contains("?") ? "&" : "?") + "search_path=" + schema
    let shelf = folder.appendingPathComponent("shelf", isDirectory: true)
    return TestHubStore(arguments: ["--postgres", url, "--shelf", shelf.path]) {
        try HubDatabase(postgres: try PostgresLocation(url: url), shelf: shelf)
    }
}

/// The PostgreSQL server the hub's tests run against this time, if any.
let testPostgresURL: String? = ProcessInfo.processInfo.environment["BK_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }

let quietLogger: Logger = {
    var l = Logger(label: "settlement-tests", factory: { _ in SwiftLogNoOpLogHandler() })
    l.logLevel = .critical
    return l
}()

/// A provisioned kiosk (KSK-TEST-0001 with its vector key) in its own state folder.
func provisionDevice(hubURL: String, stateDir: URL = temporaryFolder("kiosk"), deviceID: String = Fixtures.deviceID) throws -> Device {
    let config = DeviceConfig(deviceID: deviceID, institution: "330782-H01", profile: .hospital, issuerKeys: [:], authorityKeys: [:],
                              hubURL: hubURL, printer: "file:/dev/null", provisionedAt: "2026-11-22T00:00:00Z")
    return try Device.provision(stateDir: stateDir, config: config, seed: Fixtures.seed(deviceID), replaceKey: false)
}

let testEpoch = Date(timeIntervalSince1970: 1_795_316_400) // 2026-11-22T03:00:00Z

/// Queues `count` alert records (each its own committed transaction, as in the kiosk).
@discardableResult
func queueAlerts(_ device: Device, _ count: Int, detail: String = "test alert") throws -> [StoredRecord] {
    try (0..<count).map { i in
        try device.store.recordAlert(device: device.context, code: "printer_fault", cardNumber: nil, detail: "\(detail) \(i)",
                                     now: testEpoch.addingTimeInterval(Double(i)))
    }
}

/// The roster of the vectors' snapshot: programs, devices (KSK-TEST-0001 active, of
/// 330782-H01), persons, and cards with their public keys.
func snapshotRoster() throws -> Roster {
    var r = Roster()
    try r.load(snapshot: Fixtures.url("snapshot-small.jsonl").path)
    return r
}

/// A controllable instant for the hub's `received_at`.
final class TestClock: Sendable {
    private let value: Mutex<Date>
    init(_ d: Date) { value = Mutex(d) }
    var now: Date {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// The real hub, in process, on an ephemeral loopback port, with its own SQLite file.
struct HubFixture {
    let hub: SettlementHub
    let running: RunningHub
    let clock: TestClock
    var url: String { running.url }

    static func start(roster: Roster? = nil, limits: HubLimits = HubLimits(), faults: HubFaults = .none,
                      now: Date = testEpoch.addingTimeInterval(60), tls: TLSConfiguration? = nil,
                      rosterKeys: RosterKeys = [:], database: HubDatabase? = nil,
                      publicationPoll: Duration? = nil, consentStart: Date? = nil,
                      connectionLimits: ConnectionLimits = ConnectionLimits()) async throws -> HubFixture {
        let db = try database ?? testHubDatabase()
        let clock = TestClock(now)
        let hub = SettlementHub(database: db, roster: try roster ?? snapshotRoster(), limits: limits, faults: faults,
                                now: { clock.now }, logger: quietLogger, rosterKeys: rosterKeys, publicationPoll: publicationPoll,
                                consentStart: consentStart, connectionLimits: connectionLimits)
        let running = try await hub.start(tls: tls)
        return HubFixture(hub: hub, running: running, clock: clock)
    }

    func stop() async { await running.stop() }
}

/// Waits the uploader asked for, recorded instead of waited (except very long ones, which
/// suspend until cancelled, so `run()` can idle without spinning).
actor SleepRecorder {
    private(set) var sleeps: [Duration] = []
    func record(_ d: Duration) { sleeps.append(d) }

    nonisolated func sleep(_ d: Duration) async throws {
        await record(d)
        if d >= .seconds(3600) {
            try await Task.sleep(for: .seconds(100_000))
        } else {
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

/// Fixed jitter values, cycled.
final class RandomSequence: Sendable {
    private let values: [Double]
    private let i = Mutex(0)
    init(_ values: [Double]) { self.values = values }
    func next() -> Double {
        let n = i.withLock { i in defer { i += 1 }; return i }
        return values[n % values.count]
    }
}

func makeUploader(_ device: Device, hubURL: String? = nil, timeout: Duration = .seconds(10), sleeper: SleepRecorder = SleepRecorder(),
                  random: RandomSequence = RandomSequence([0.5]), idleRecheck: Duration = .seconds(3600),
                  now: Date = testEpoch.addingTimeInterval(30), metricsFactory: TestMetrics? = nil,
                  httpClient: HTTPClient = Uploader.sharedHTTPClient, presence: PatientPresence? = nil,
                  configure: (inout UploaderConfiguration) -> Void = { _ in }) throws -> Uploader {
    var config = try UploaderConfiguration(hubURL: hubURL ?? device.config.hubURL)
    config.requestTimeout = timeout
    config.idleRecheck = idleRecheck
    configure(&config)
    var environment = UploaderEnvironment(now: { now }, sleep: { try await sleeper.sleep($0) }, random: { random.next() },
                                          makeBatchID: { UUID().uuidString.lowercased() })
    if let presence { environment.beforeBatch = { await presence.waitWhileServing(every: .milliseconds(5)) } }
    return Uploader(store: device.store, device: device.context, signingKey: device.signingKey, configuration: config,
                    httpClient: httpClient, environment: environment, logger: quietLogger, metricsFactory: metricsFactory)
}

/// POSTs a body to the hub with a signature, as any client would.
func post(_ url: String, _ body: [UInt8], signature: String?) async throws -> (Int, [String: Any]?, String) {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    if let signature { request.headers.add(name: "X-Signature", value: signature) }
    request.body = .bytes(body)
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    var buffer = try await response.body.collect(upTo: 16 << 20)
    let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
    let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
    return (Int(response.status.code), object, String(decoding: bytes, as: UTF8.self))
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Runs `body` with a fresh in-process hub, stopped afterwards whatever happens.
func withHub<T>(roster: Roster? = nil, limits: HubLimits = HubLimits(), faults: HubFaults = .none, now: Date = testEpoch.addingTimeInterval(60),
                rosterKeys: RosterKeys = [:], consentStart: Date? = nil,
                _ body: (HubFixture) async throws -> T) async throws -> T {
    let hub = try await HubFixture.start(roster: roster, limits: limits, faults: faults, now: now, rosterKeys: rosterKeys, consentStart: consentStart)
    do {
        let result = try await body(hub)
        await hub.stop()
        return result
    } catch {
        await hub.stop()
        throw error
    }
}

/// The vectors' cards' own keys (`cards.json`, TEST KEYS ONLY): to make the acknowledgements
/// a card would make (card spec §5.4), for records the vectors do not hold.
enum TestCards {
    static func privateKey(_ cardNumber: String) throws -> Curve25519.Signing.PrivateKey {
        let cards = try #require(Vectors.json("cards.json")["cards"] as? [[String: Any]])
        let card = try #require(cards.first { $0["card_number"] as? String == cardNumber }, "no card \(cardNumber) in cards.json")
        let seed = try #require((card["card_private_seed"] as? String).flatMap { Data(base64Encoded: $0) })
        return try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
    }

    /// "USAGE-ACK-V2" ‖ card number ‖ sequence (4 bytes, big-endian) ‖ challenge (16 bytes), built here on its own.
    static func ackMessage(cardNumber: String, sequence: UInt32, challenge: [UInt8]) -> [UInt8] {
        var m = Array("USAGE-ACK-V2".utf8) + Array(cardNumber.utf8)
        withUnsafeBytes(of: sequence.bigEndian) { m.append(contentsOf: $0) }
        return m + challenge
    }

    /// `card_ack` (base64): `signer`'s card key over the acknowledgement of `cardNumber`'s write.
    static func ack(signer: String, cardNumber: String, sequence: UInt32, challenge: [UInt8]) throws -> String {
        try privateKey(signer).signature(for: ackMessage(cardNumber: cardNumber, sequence: sequence, challenge: challenge)).base64EncodedString()
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
