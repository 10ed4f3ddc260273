import BenefitCard
import Foundation
import KioskCore
import KioskProtocol
import KioskStore
import Logging
import SmartCard
import Synchronization
import TestVectors
import Testing
import VirtualCard

/// Emulated cards on named readers: the engine's card access without pcscd.
final class EmulatedCards: CardAccess, @unchecked Sendable {
    // @unchecked: the engine uses it from its serial queue only, and the test only between
    // awaited engine calls (each `perform` is a happens-before edge through the queue).
    var onReader: [String: CardEmulator] = [:]
    var sessions = 0

    func withCard<T>(_ reader: String, _ body: (CardChannel) throws -> T) throws -> T {
        guard let e = onReader[reader] else { throw CardError.cardRemoved }
        sessions += 1
        return try body(EmulatedChannel(e))
    }
}

/// The screen as the engine publishes it, change by change, for assertions.
final class ScreenWatch: Sendable {
    final class Box: Sendable {
        let state: Mutex<ScreenState>
        init(_ s: ScreenState) { state = Mutex(s) }
    }
    let box: Box
    let task: Task<Void, Never>

    init(_ feed: ScreenFeed, _ initial: ScreenState) {
        let box = Box(initial)
        self.box = box
        task = Task { for await change in feed.changes { box.state.withLock { change(&$0) } } }
    }

    var now: ScreenState { box.state.withLock { $0 } }

    /// Waits (at most 10 s) until `condition` holds on the screen, and returns it.
    func until(_ what: String, _ condition: (ScreenState) -> Bool) async throws -> ScreenState {
        for _ in 0..<1000 {
            let s = now
            if condition(s) { return s }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("the screen never showed \(what): \(now.json)")
        throw CancellationError()
    }
}

/// The daemon's session engine as a unit (issue 22 item 3): card events and bill actions in,
/// screen states and store rows out, with emulated cards instead of pcscd.
@Suite struct EngineTests {
    static let at = Date(timeIntervalSince1970: 1_795_316_400)   // 2026-11-22T03:00:00Z
    static let card17 = "3307820000000017"
    static let reader = "Emulated Reader 00"

    struct Rig {
        let engine: Engine
        let cards: EmulatedCards
        let screen: ScreenWatch
        let device: Device
    }

    static func rig(profile: DeviceConfig.Profile = .hospital, printer: String? = nil) throws -> Rig {
        let dir = Scratch.folder("engine")
        let id = "KSK-TEST-0001"
        let seed = Vectors.devices[id].flatMap { $0["private_seed"] }.flatMap { Data(base64Encoded: $0) }
        var d = try Device.provision(stateDir: dir, config: DeviceConfig(
            deviceID: id, institution: "330782-H01", profile: profile,
            issuerKeys: TestDevices.issuerKeys, authorityKeys: TestDevices.authorityKeys, deviceCAKeys: TestDevices.caKeys,
            hubURL: "http://127.0.0.1:9", printer: printer ?? ("file:" + dir.appendingPathComponent("slips").path), provisionedAt: "2026-11-22T00:00:00Z"),
            seed: seed, replaceKey: false)
        try d.installCertificate(TestDevices.certificate(id), now: at)
        d = try Device(stateDir: dir)
        try d.store.installSnapshot(at: Vectors.url("snapshot-small.jsonl"), trustedAuthorities: d.trustedAuthorities, now: at)
        let feed = ScreenFeed()
        let cards = EmulatedCards()
        let logger = Logger(label: "engine-tests", factory: { _ in SwiftLogNoOpLogHandler() })
        let engine = Engine(kiosk: Kiosk(device: d, clock: .fixed(at)), feed: feed, filter: ReaderFilter(allowVirtual: true),
                            logger: logger, receipts: ReceiptDesk(device: d), cards: cards)
        let screen = ScreenWatch(feed, ScreenState(profile: profile.rawValue, institution: "", deviceID: id))
        return Rig(engine: engine, cards: cards, screen: screen, device: d)
    }

    /// Taps `card` on the reader (a fresh tap).
    static func tap(_ r: Rig, _ card: CardEmulator) async {
        r.cards.onReader[reader] = card
        await r.engine.cardInserted(reader)
    }

    static func lift(_ r: Rig) async {
        r.cards.onReader[reader] = nil
        await r.engine.cardRemoved(reader)
    }

    @Test("a card left on the reader never pays the next patient's bill: the bill asks for a fresh tap, nothing is read for it")
    func aRestingCardDoesNotPayTheNextBill() async throws {
        let r = try Self.rig()
        let card = Vectors.emulator(Self.card17)
        let usageBefore = card.file(3)
        await Self.tap(r, card)
        _ = try await r.screen.until("the card's status") { $0.phase == "result" && $0.result?.action == "check" }
        let sessionsBefore = r.cards.sessions

        let outcome = try await r.engine.submitBill(BillRequest(billReference: "H-1", billFen: 12_345))
        #expect(outcome.status == .waiting)
        let s = try await r.screen.until("the lift-card prompt") { $0.bill?.billReference == "H-1" }
        #expect(s.liftCard && s.phase == "idle" && s.result == nil)
        try await r.engine.perform {}                         // everything queued has run
        #expect(r.cards.sessions == sessionsBefore, "the resting card was read for the bill")
        #expect(card.file(3) == usageBefore)
        #expect(try r.device.store.queuedCount() == 0)
        #expect(try r.device.store.billOutcome("H-1", now: Self.at)?.status == .waiting)
    }

    @Test("a kiosk provisioned --printer none: granted says what to pay and promises no slip, in words or voice; nothing is printed")
    func noPrinterPromisesNoSlip() async throws {
        let r = try Self.rig(printer: DeviceConfig.noPrinter)
        _ = try await r.engine.submitBill(BillRequest(billReference: "H-NP", billFen: 12_345))
        await Self.tap(r, Vectors.emulator(Self.card17))
        let confirm = try await r.screen.until("the pre-settlement") { $0.phase == "confirm" }
        try await r.engine.confirmBill("H-NP", confirmation: try #require(confirm.result?.confirmation))
        let done = try await r.screen.until("the result") { $0.phase == "result" && $0.result?.action == "charge" }
        let result = try #require(done.result)
        #expect(result.code == "granted")
        #expect(result.receipt == "no printer")
        #expect(!result.next.contains("凭条") || result.next.contains("不打印凭条"), "\(result.next)")
        #expect(result.next.contains("您需支付"))
        #expect(!result.voice.contains("take_receipt"))
        #expect(try r.device.store.queuedCount() == 1, "the subsidy is recorded whether or not a slip prints")
        #expect(!FileManager.default.fileExists(atPath: r.device.stateDir.appendingPathComponent("slips").path))
        await Self.lift(r)
        let after = try await r.screen.until("the redacted result") { $0.result?.redacted == true }
        #expect(after.result?.next.contains("取走凭条") == false)
        // The same engine with a printer does promise the slip (the test can fail).
        let printing = Guidance.of(code: "granted", profile: .hospital, settings: ScreenSettings(), patientPaysFen: 2_345)
        #expect(printing.next.contains("请取走凭条") && printing.voice.contains("take_receipt"))
        let township = Guidance.of(code: "applied", profile: .township, settings: ScreenSettings(), printsSlips: false)
        #expect(!township.next.contains("回执") && township.voice == ["applied_no_ticket"])
    }

    @Test("tap, pre-settlement, 确认: the card is written once, one subsidy queued, the bill granted, the screen forgets on lift")
    func tapConfirmGranted() async throws {
        let r = try Self.rig()
        _ = try await r.engine.submitBill(BillRequest(billReference: "H-2", billFen: 12_345))
        let card = Vectors.emulator(Self.card17)
        let usageBefore = card.file(3)
        await Self.tap(r, card)
        let confirm = try await r.screen.until("the pre-settlement") { $0.phase == "confirm" }
        let pre = try #require(confirm.result)
        let subsidy = try #require(pre.subsidyFen), pays = try #require(pre.patientPaysFen)
        #expect(subsidy > 0 && subsidy + pays == 12_345)
        #expect(card.file(3) == usageBefore, "written before 确认")
        #expect(try r.device.store.billOutcome("H-2", now: Self.at)?.status == .confirming)

        try await r.engine.confirmBill("H-2", confirmation: try #require(pre.confirmation))
        let done = try await r.screen.until("the result") { $0.phase == "result" && $0.result?.action == "charge" }
        #expect(done.result?.code == "granted")
        #expect(done.result?.subsidyFen == subsidy && done.result?.patientPaysFen == pays)
        #expect(card.file(3) != usageBefore)
        let outcome = try #require(try r.device.store.billOutcome("H-2", now: Self.at))
        #expect(outcome.status == .granted && outcome.subsidyFen == subsidy && outcome.records.count >= 1)
        #expect(try r.device.store.queuedCount() == outcome.records.count)

        // The same confirmation again: refused, nothing written twice.
        await #expect(throws: Engine.ActionError.self) { try await r.engine.confirmBill("H-2", confirmation: try #require(pre.confirmation)) }
        #expect(try r.device.store.queuedCount() == outcome.records.count)

        await Self.lift(r)
        let after = try await r.screen.until("the card lifted") { !$0.cardPresent }
        #expect(after.result?.cardNumber == nil && after.result?.holder == nil, "the screen kept the patient's card: \(after.json)")
    }

    @Test("取消 on the pre-settlement, or the card pulled before 确认: nothing written, the bill waits for a tap again")
    func declineOrPullWritesNothing() async throws {
        let r = try Self.rig()
        _ = try await r.engine.submitBill(BillRequest(billReference: "H-3", billFen: 5_000))
        let card = Vectors.emulator(Self.card17)
        let usageBefore = card.file(3)
        await Self.tap(r, card)
        let first = try #require(try await r.screen.until("the pre-settlement") { $0.phase == "confirm" }.result?.confirmation)
        try await r.engine.declineBill("H-3", confirmation: first)
        _ = try await r.screen.until("the decline") { $0.phase != "confirm" }
        #expect(try r.device.store.billOutcome("H-3", now: Self.at)?.status == .waiting)

        await Self.lift(r)
        await Self.tap(r, card)
        let second = try #require(try await r.screen.until("the second pre-settlement") { $0.phase == "confirm" && $0.result?.confirmation != first }
            .result?.confirmation)
        await Self.lift(r)
        await #expect(throws: Engine.ActionError.self) { try await r.engine.confirmBill("H-3", confirmation: second) }
        #expect(card.file(3) == usageBefore)
        #expect(try r.device.store.queuedCount() == 0)
        #expect(try r.device.store.billOutcome("H-3", now: Self.at)?.status == .waiting)
    }

    @Test("a second bill while one waits is refused; a township kiosk takes no bill")
    func oneBillAtATime() async throws {
        let r = try Self.rig()
        _ = try await r.engine.submitBill(BillRequest(billReference: "H-4", billFen: 100))
        let again = try await r.engine.submitBill(BillRequest(billReference: "H-4", billFen: 100))
        #expect(again.status == .waiting)
        await #expect(throws: Engine.ActionError.self) { try await r.engine.submitBill(BillRequest(billReference: "H-5", billFen: 100)) }
        let cancelled = try await r.engine.cancelBill()
        #expect(cancelled.status == .cancelled)

        let township = try Self.rig(profile: .township)
        await #expect(throws: Engine.ActionError.self) { try await township.engine.submitBill(BillRequest(billReference: "H-6", billFen: 100)) }
    }

    @Test("the WAL's checkpoint waits for the card to leave: never inside a patient's commit while the card is on the reader")
    func theCheckpointWaitsForTheCardToLeave() async throws {
        let r = try Self.rig()
        let store = r.device.store
        _ = try store.checkpointWhenIdle(minimumPages: 1)
        var n = 0
        while store.walPages < KioskStore.idlePages && n < 2000 {
            _ = try store.recordAlert(device: r.device.context, code: "printer_fault", cardNumber: nil, detail: "\(n)", now: Self.at)
            n += 1
        }
        _ = try await r.engine.submitBill(BillRequest(billReference: "H-7", billFen: 1_000))
        await Self.tap(r, Vectors.emulator(Self.card17))
        let pre = try #require(try await r.screen.until("the pre-settlement") { $0.phase == "confirm" }.result?.confirmation)
        try await r.engine.confirmBill("H-7", confirmation: pre)
        _ = try await r.screen.until("the result") { $0.phase == "result" && $0.result?.code == "granted" }
        try await Task.sleep(for: .milliseconds(200))
        #expect(store.walPages >= KioskStore.idlePages, "checkpointed while the card was on the reader")
        await Self.lift(r)
        for _ in 0..<3000 where store.walPages >= KioskStore.idlePages { try await Task.sleep(for: .milliseconds(10)) }
        #expect(store.walPages < KioskStore.idlePages, "the card left and the WAL was not checkpointed")
    }
}
