import ArgumentParser
import BenefitCard
import Crypto
import KioskProtocol
import Foundation
import KioskStore
import Settlement
import TestVectors

/// Issue 12's load benchmark: N simulated kiosks, each with its own key (registered in the
/// hub's roster), each draining its own queue through the real uploader, one signed batch per
/// request, spread over one or more hub processes. Prints accepted records per second and the
/// batch latency p50/p99. Asserts nothing (Benchmarks/hub-load.sh runs the matrix).
struct HubLoadBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub-load",
        abstract: "N kiosks upload signed batches to one or more hubs at once; records/s and batch latency.",
        subcommands: [Roster.self, Queue.self, Run.self])

    /// Kiosk `i`'s identity: `KSK-LOAD-0001`…, its key from a fixed seed.
    static func kiosk(_ i: Int) -> (id: String, key: Curve25519.Signing.PrivateKey) {
        let id = String(format: "KSK-LOAD-%04ld", i + 1)
        let seed = SHA256.hash(data: Data("hub-load \(id)".utf8))
        return (id, try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(seed)))
    }

    static let institution = "330782-H01"

    struct Roster: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the hub's roster of N load kiosks (for settlement-hub --snapshot).")
        @Option var kiosks = 100
        @Option var out: String
        func run() throws {
            var text = ""
            for i in 0..<kiosks {
                let k = HubLoadBench.kiosk(i)
                let line = try JSONSerialization.data(withJSONObject: ["type": "device", "device_id": k.id, "institution": HubLoadBench.institution,
                                                                        "status": "active", "public_key": k.key.publicKey.rawRepresentation.base64EncodedString()],
                                                      options: [.sortedKeys, .withoutEscapingSlashes])
                text += String(decoding: line, as: UTF8.self) + "\n"
            }
            try Data(text.utf8).write(to: URL(fileURLWithPath: out))
        }
    }

    struct Queue: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queue records in each kiosk's own store (copy the folder for each run).")
        @Option var kiosks = 100
        @Option(help: "Records each kiosk queues (alert records: the hub checks and stores them; no card acknowledgement to verify).")
        var records = 200
        @Option(help: "Folder for the kiosks' stores.") var dir: String
        @Option(help: """
            Queue subsidies instead: each kiosk installs this snapshot-gen snapshot (made with --card-keys, at least \
            twice kiosks × records persons) and pays one bill of 10.00 yuan for each of its own persons (taken in \
            order, each once; those stopped or revoked skipped), acknowledged with each card's own key, so the hub \
            looks every card up and verifies its word.
            """) var subsidies: String?
        @Option(help: "snapshot-gen's --seed, for --subsidies.") var populationSeed: UInt64 = 20_261_122

        func run() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if let subsidies { return try queueSubsidies(snapshot: subsidies) }
            for i in 0..<kiosks {
                let k = HubLoadBench.kiosk(i)
                let device = DeviceContext(deviceID: k.id, institution: HubLoadBench.institution)
                let store = try KioskStore(path: "\(dir)/\(k.id).sqlite")
                let start = Date(timeIntervalSince1970: 1_795_316_400)
                for n in 0..<records {
                    _ = try store.recordAlert(device: device, code: "printer_fault", cardNumber: nil, detail: "load \(n)",
                                              now: start.addingTimeInterval(Double(n)))
                }
            }
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every kiosk drains its queue (made by `queue`) at once.")
        @Option(help: "A hub base URL (repeatable: kiosk i uses hub i mod count).") var hub: [String]
        @Option var kiosks = 100
        @Option(help: "Records per batch (1–500).") var batch = 50
        @Option(help: "Folder of the kiosks' stores.") var dir: String

        func validate() throws {
            guard !hub.isEmpty, kiosks > 0, (1...500).contains(batch) else { throw ValidationError("--hub, --kiosks, --batch 1…500") }
        }

        func run() throws {
            var uploaders: [Uploader] = []
            for i in 0..<kiosks {
                let k = HubLoadBench.kiosk(i)
                let device = DeviceContext(deviceID: k.id, institution: HubLoadBench.institution)
                let store = try KioskStore(path: "\(dir)/\(k.id).sqlite")
                var configuration = try UploaderConfiguration(hubURL: hub[i % hub.count])
                configuration.maxRecords = batch
                configuration.maxBatchesPerDrain = 1
                uploaders.append(Uploader(store: store, device: device, signingKey: k.key, configuration: configuration))
            }
            let all = uploaders
            print(try waitFor { try await Self.load(all) })
        }

        /// Every kiosk drains at once, a batch per request; each request timed.
        static func load(_ uploaders: [Uploader]) async throws -> String {
            let t0 = monotonicSeconds()
            let results = try await withThrowingTaskGroup(of: (Int, [Double]).self) { group in
                for u in uploaders {
                    group.addTask {
                        var accepted = 0
                        var latencies: [Double] = []
                        while true {
                            let s = monotonicSeconds()
                            let summary = await u.drainOnce()
                            if summary.requests > 0 { latencies.append(monotonicSeconds() - s) }
                            accepted += summary.accepted
                            guard summary.rejected.isEmpty else { throw ValidationError("the hub rejected records: \(summary.rejected.prefix(3))") }
                            switch summary.outcome {
                            case .drained: return (accepted, latencies)
                            case .more: continue
                            case .retry(_, let failure): throw ValidationError("a batch was not taken: \(failure)")
                            }
                        }
                    }
                }
                var all: [(Int, [Double])] = []
                for try await r in group { all.append(r) }
                return all
            }
            let seconds = monotonicSeconds() - t0
            let accepted = results.reduce(0) { $0 + $1.0 }
            let latencies = results.flatMap(\.1).sorted()
            func quantile(_ q: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))] }
            return String(format: "hub_load kiosks=%ld records=%ld batches=%ld seconds=%.3f records_per_second=%.1f batch_p50_ms=%.1f batch_p99_ms=%.1f",
                          uploaders.count, accepted, latencies.count, seconds, Double(accepted) / seconds, quantile(0.5) * 1000, quantile(0.99) * 1000)
        }
    }
}

extension HubLoadBench.Queue {
    /// `queue --subsidies`: each kiosk's bills, granted and committed as at the counter (the
    /// decision on the installed snapshot, the ledger's two transactions), each acknowledged
    /// by its card's own key.
    func queueSubsidies(snapshot: String) throws {
        let population = SyntheticPopulation(seed: populationSeed)
        let trusted = try TestAuthority.trusted()
        let now = DecideBench.now
        let period = Period.of(now)
        let run = UInt64(Date().timeIntervalSince1970 * 1000)
        var next = 0  // persons in order, each paid once; those not granted (stopped, revoked) skipped
        for i in 0..<kiosks {
            let k = HubLoadBench.kiosk(i)
            let device = DeviceContext(deviceID: k.id, institution: HubLoadBench.institution)
            let store = try KioskStore(path: "\(dir)/\(k.id).sqlite")
            let installed = try store.installSnapshot(at: URL(fileURLWithPath: snapshot), trustedAuthorities: trusted, now: now)
            for _ in 0..<records {
                var found: (person: Int, number: String, decision: SubsidyDecision, personRef: String)?
                while found == nil {
                    let person = next
                    next += 1
                    guard person < installed.records else {
                        throw ValidationError("the snapshot has too few granted persons for \(kiosks) × \(records) bills (make it about twice that)")
                    }
                    let number = SyntheticPopulation.cardNumber(person)
                    let card = CardFacts(cardNumber: number, kind: .medical, category: person % 10 == 0 ? "02" : "01", expired: false)
                    let view = try store.view(cardNumber: number, period: period)
                    let decision = Decide.subsidy(card: card, view: view, billFen: 1000, now: now)
                    if decision.isGranted, let personRef = view?.card?.personRef { found = (person, number, decision, personRef) }
                }
                let (person, number, decision, personRef) = found!
                let message = CardSession.ackMessage(cardNumber: number, sequence: 1, challenge: DecideBench.challenge)
                let ack = Array(try population.cardPrivateKey(number, person).signature(for: message))
                let id = try store.beginDeduction(device: device, cardNumber: number, personRef: personRef, period: period, cardFen: [:],
                                                  decision: decision, billReference: "LOAD-\(run)-\(person)", cardSequence: 1,
                                                  usageObject: [0x72, 0x00], cardChallenge: DecideBench.challenge, now: now)
                try store.commitDeduction(id, device: device, ack: ack, now: now)
            }
        }
    }
}
