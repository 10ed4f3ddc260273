import ArgumentParser
import Foundation
import KioskStore
import Settlement

/// Issue 11: the queue drain, as the kiosk's uploader does it (signed batches of up to 500
/// records over HTTP, each marked only on the hub's believable 200), from a store that
/// `kiosk-bench decide` filled, to a `settlement-hub serve` that knows the bench device
/// (`bench-device-key`). Prints records per second; `Benchmarks/drain-floor.sh` sets it
/// against the hub's bare insert rate.
struct DrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drain", abstract: "Drain a store's upload queue to a hub; records per second.")

    @Option(help: "Store whose queue to drain (records of the bench device, KSK-BENCH-0001).") var db: String
    @Option(help: "Hub base URL, e.g. http://127.0.0.1:8443.") var hub: String
    @Option(help: "Records per batch (1–500).") var batch = 500

    func validate() throws {
        guard (1...500).contains(batch) else { throw ValidationError("--batch is 1…500") }
    }

    func run() throws {
        let store = try KioskStore(path: db)
        var configuration = try UploaderConfiguration(hubURL: hub)
        configuration.maxRecords = batch
        let uploader = Uploader(store: store, device: DecideBench.device, signingKey: BenchDeviceKey.key, configuration: configuration)
        print(try waitFor { try await Self.drain(uploader) })
    }

    static func drain(_ uploader: Uploader) async throws -> String {
        let t0 = monotonicSeconds()
        var accepted = 0, requests = 0, rejected = 0
        loop: while true {
            let summary = await uploader.drainOnce()
            accepted += summary.accepted
            rejected += summary.rejected.count
            requests += summary.requests
            switch summary.outcome {
            case .drained: break loop
            case .more: continue
            case .retry(_, let failure): throw ValidationError("the hub did not take a batch: \(failure)")
            }
        }
        let seconds = monotonicSeconds() - t0
        // Rejected records are marked and leave the queue too: a rate with them in it is not a drain's.
        guard rejected == 0 else { throw ValidationError("the hub rejected \(rejected) records (see the log above): no figure") }
        return (String(format: "drain records=%d batches=%d seconds=%.3f records_per_second=%.1f", accepted, requests, seconds, Double(accepted) / seconds))
    }
}
