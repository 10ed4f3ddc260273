import ArgumentParser
import BenefitCard
import KioskProtocol
import Foundation
import KioskStore
import TestVectors

/// The software side of a decision on a big store: snapshot lookup + rule, and for granted
/// bills the ledger's pending + commit (two durable transactions). No card, no pcscd.
struct DecideBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decide",
        abstract: "Lookup + decide, and decide + ledger commit, for random cards of a store holding a snapshot-gen snapshot.")

    @Option(help: "Store holding an installed snapshot-gen snapshot.") var db: String
    @Option var iterations = 2000
    @Option(help: "Persons of the generated snapshot (default: found by probing card numbers).") var persons: Int?
    @Option(help: "Seed for the card choice and bills.") var seed: UInt64 = 7
    @Flag(help: "Acknowledge each write as the card would (its snapshot-gen --card-keys key, its own sequence), so a hub accepts the records (kiosk-bench drain); the signing is timed with the ledger.")
    var cardAcks = false
    @Option(help: "snapshot-gen's --seed, for --card-acks.") var populationSeed: UInt64 = 20_261_122
    @Option(help: "After the timed loop: this many more granted decisions, each step's pages counted in the WAL (checkpointed and truncated before each step, so it is not timed).")
    var countPages = 0
    @Option(help: "Diagnosis: the writer's automatic WAL checkpoint, in pages (PRAGMA wal_autocheckpoint, which replaces the store's WAL hook; 0: none; default: the store's).")
    var autocheckpoint: Int?
    @Flag(inversion: .prefixedNo, help: "After each commit, untimed, what kioskd does when the card leaves the reader: KioskStore.checkpointWhenIdle().")
    var idleCheckpoint = true
    @Option(help: "With --count-pages: copy the WAL of the first begin and commit here (begin.wal, commit.wal), to map its frames to tables with dbstat.")
    var keepWal: String?

    static let device = DeviceContext(deviceID: "KSK-BENCH-0001", institution: "330782-H01")
    static let challenge = [UInt8](repeating: 0xC4, count: 16)
    static let ack = [UInt8](repeating: 0xAC, count: 64)
    /// Fixed clock: inside the generated snapshots' validity.
    static let now = Date(timeIntervalSince1970: 1_795_316_400)   // 2026-11-22T03:00:00Z

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
    }

    func run() throws {
        precondition(Timestamp.string(DecideBench.now) == "2026-11-22T03:00:00Z")
        guard FileManager.default.fileExists(atPath: db) else { throw ValidationError("no store at \(db)") }
        let store = try KioskStore(path: db)
        if let autocheckpoint { try store.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_autocheckpoint = \(autocheckpoint)") } }
        guard let installed = try store.installedSnapshot() else { throw ValidationError("no snapshot installed in \(db)") }
        let period = Period.of(DecideBench.now)
        let n = try persons ?? probePersons(store, period: period)
        print("decide store=\(db) snapshot_id=\(installed.header.snapshotID) records=\(installed.records) persons=\(n) period=\(period)")

        var rng = SplitMix64(seed: seed)
        let run = UInt64(Date().timeIntervalSince1970 * 1000)
        var lastIndex = 0
        func pick() -> CardFacts {
            let i = rng.below(n)
            lastIndex = i
            return CardFacts(cardNumber: SyntheticPopulation.cardNumber(i), kind: .medical, category: i % 10 == 0 ? "02" : "01", expired: false)
        }
        // Warm up (lookups only: the ledger is not touched).
        for _ in 0..<50 {
            let card = pick()
            _ = Decide.subsidy(card: card, view: try store.view(cardNumber: card.cardNumber, period: period), billFen: 1000, now: DecideBench.now)
        }

        let population = SyntheticPopulation(seed: populationSeed)
        var sequences: [String: UInt32] = [:]
        var lookup: [Double] = [], full: [Double] = [], ledger: [Double] = []
        lookup.reserveCapacity(iterations)
        var codes: [ReasonCode: Int] = [:]
        var checkpoints = 0
        for k in 0..<iterations {
            let card = pick()
            let billFen = Fen(100 + rng.below(20000))
            let t0 = DispatchTime.now().uptimeNanoseconds
            let view = try store.view(cardNumber: card.cardNumber, period: period)
            let decision = Decide.subsidy(card: card, view: view, billFen: billFen, now: DecideBench.now)
            let t1 = DispatchTime.now().uptimeNanoseconds
            lookup.append(Double(t1 - t0) / 1000)
            codes[decision.code, default: 0] += 1
            guard decision.isGranted, let personRef = view?.card?.personRef else { continue }
            // No card here: a fixed challenge and acknowledgement stand in for the card's, or
            // with --card-acks the card's own (its key, its next sequence).
            var sequence: UInt32 = 1
            var ack = DecideBench.ack
            if cardAcks {
                sequence = (sequences[card.cardNumber] ?? 0) + 1
                sequences[card.cardNumber] = sequence
                let message = CardSession.ackMessage(cardNumber: card.cardNumber, sequence: sequence, challenge: DecideBench.challenge)
                ack = Array(try population.cardPrivateKey(card.cardNumber, lastIndex).signature(for: message))
            }
            let id = try store.beginDeduction(device: DecideBench.device, cardNumber: card.cardNumber, personRef: personRef, period: period,
                                              cardFen: [:], decision: decision, billReference: "BENCH-\(run)-\(k)",
                                              cardSequence: sequence, usageObject: [0x72, 0x00], cardChallenge: DecideBench.challenge,
                                              now: DecideBench.now)
            try store.commitDeduction(id, device: DecideBench.device, ack: ack, now: DecideBench.now)
            let t2 = DispatchTime.now().uptimeNanoseconds
            ledger.append(Double(t2 - t1) / 1000)
            full.append(Double(t2 - t0) / 1000)
            if idleCheckpoint, try store.checkpointWhenIdle() != nil { checkpoints += 1 }
        }
        print("decide codes " + codes.sorted { $0.value > $1.value }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: " "))
        reportLatency("lookup_decide", lookup)
        reportLatency("ledger_begin_commit", ledger)
        reportLatency("decide_commit", full)
        print("decide idle_checkpoint=\(idleCheckpoint ? "on" : "off") idle_checkpoints=\(checkpoints) wal_pages_left=\(store.walPages)")
        if countPages > 0 { try self.countPages(store, period: period, run: run, pick: pick) }
        print(String(format: "decide peak_rss_mb=%.1f", Memory.peakMB()))
    }

    /// Pages each durable transaction writes: the WAL is checkpointed and truncated before
    /// each step, so its frames afterwards are that step's pages (page size + 24 bytes each,
    /// after the 32-byte header).
    func countPages(_ store: KioskStore, period: String, run: UInt64, pick: () -> CardFacts) throws {
        let wal = store.path + "-wal"
        let pageSize = try store.pool.read { try Int.fetchOne($0, sql: "PRAGMA page_size") } ?? 4096
        func truncate() throws { try store.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") } }
        func frames() throws -> Int {
            let size = (try FileManager.default.attributesOfItem(atPath: wal)[.size] as? Int) ?? 0
            return size <= 32 ? 0 : (size - 32) / (pageSize + 24)
        }
        var begin: [Int] = [], commit: [Int] = []
        var k = 0
        while begin.count < countPages && k < countPages * 20 {
            k += 1
            let card = pick()
            let view = try store.view(cardNumber: card.cardNumber, period: period)
            let decision = Decide.subsidy(card: card, view: view, billFen: Fen(100 + k % 5000), now: DecideBench.now)
            guard decision.isGranted, let personRef = view?.card?.personRef else { continue }
            try truncate()
            let id = try store.beginDeduction(device: DecideBench.device, cardNumber: card.cardNumber, personRef: personRef, period: period,
                                              cardFen: [:], decision: decision, billReference: "PAGES-\(run)-\(k)",
                                              cardSequence: 1, usageObject: [0x72, 0x00], cardChallenge: DecideBench.challenge,
                                              now: DecideBench.now)
            begin.append(try frames())
            if let keepWal, begin.count == 1 { try? FileManager.default.copyItem(atPath: wal, toPath: keepWal + "/begin.wal") }
            try truncate()
            try store.commitDeduction(id, device: DecideBench.device, ack: DecideBench.ack, now: DecideBench.now)
            commit.append(try frames())
            if let keepWal, commit.count == 1 { try? FileManager.default.copyItem(atPath: wal, toPath: keepWal + "/commit.wal") }
        }
        func median(_ a: [Int]) -> Int { a.sorted()[a.count / 2] }
        guard !begin.isEmpty else { print("decide pages: no granted decision"); return }
        print("decide pages n=\(begin.count) page_size=\(pageSize) begin_median=\(median(begin)) begin_max=\(begin.max()!) commit_median=\(median(commit)) commit_max=\(commit.max()!) total_median=\(median(zip(begin, commit).map(+)))")
    }

    /// The largest card index with a card in the store (binary search on "3307829" + index).
    func probePersons(_ store: KioskStore, period: String) throws -> Int {
        func exists(_ i: Int) throws -> Bool {
            // A delta may delete a card: any of ten neighbours counts.
            for j in i..<(i + 10) where try store.view(cardNumber: SyntheticPopulation.cardNumber(j), period: period)?.card != nil { return true }
            return false
        }
        guard try exists(0) else { throw ValidationError("the store holds no snapshot-gen cards; give --persons") }
        var lo = 0, hi = 1
        while try exists(hi) { lo = hi; hi *= 2 }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if try exists(mid) { lo = mid } else { hi = mid }
        }
        return lo + 1
    }
}
