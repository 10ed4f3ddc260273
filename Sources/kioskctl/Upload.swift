import AsyncHTTPClient
import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import KioskCore
import KioskStore
import Logging
import Settlement

/// `kioskctl upload`: drains the settlement queue to the provisioned hub now.
struct Upload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send the queued settlement records to the settlement hub now.",
        discussion: """
        Exits 0 when the queue is empty (records the hub rejected are listed; they stay on the kiosk, \
        marked rejected). Without --once, an unreachable or busy hub is retried with backoff for up to \
        --max-wait seconds. A hub that refuses the device (401/403), calls the batch malformed (400) or \
        answers nonsense is not retried: exit 8. Hub unreachable: exit 5. Kiosk database failure: exit 7.
        """
    )

    @OptionGroup var state: StateOptions
    @Flag(help: "One pass: stop at the first failure instead of retrying.") var once = false
    @Option(help: "Without --once: give up after this many seconds of retrying.") var maxWait = 60
    @Option(help: "Request timeout in seconds.") var timeout = 30
    @Flag(help: "Print the summary as JSON.") var json = false

    func validate() throws {
        guard maxWait >= 0 else { throw ValidationError("--max-wait must not be negative") }
        guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1…600 seconds") }
    }

    func run() throws {
        let device: Device
        let clock: KioskClock
        do {
            device = try state.device()
            clock = try KioskClock.fromEnvironment()
        } catch let f as CommandFailure { try fail(f)
        } catch { try fail(CommandFailure(message: "\(error)", status: .usage)) }
        guard let url = URL(string: device.config.hubURL), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
            try fail(CommandFailure(message: "the provisioned hub URL \"\(device.config.hubURL)\" is not an http(s) URL; provision again", status: .notReady))
        }
        var config: UploaderConfiguration
        do { config = try UploaderConfiguration(hubURL: device.config.hubURL) } catch {
            try fail(CommandFailure(message: "\(error); provision again", status: .notReady))
        }
        config.requestTimeout = .seconds(timeout)
        var environment = UploaderEnvironment.live
        environment.now = clock.now
        // Transient failures are reported below, once each; the log keeps errors (rejections, refusals).
        var logger = Logger(label: "kioskctl.upload")
        logger.logLevel = .error
        let client: HTTPClient
        do { client = try Uploader.httpClient(hubCAPEM: device.config.hubCAPEM) } catch {
            try fail(CommandFailure(message: "\(error); provision again with a valid --hub-ca", status: .notReady))
        }
        let uploader = Uploader(store: device.store, device: device.context, signingKey: device.signingKey, configuration: config,
                                httpClient: client, environment: environment, logger: logger)
        let once = self.once
        let maxWait = Duration.seconds(maxWait)
        let (total, last) = blockingAwait { () async -> (DrainSummary, DrainSummary) in
            var total = DrainSummary()
            var waited = Duration.zero
            while true {
                let s = await uploader.drainOnce()
                total.requests += s.requests
                total.accepted += s.accepted
                total.duplicates += s.duplicates
                total.rejected += s.rejected
                total.splits += s.splits
                total.queued = s.queued
                total.outcome = s.outcome
                switch s.outcome {
                case .drained: return (total, s)
                case .more: continue
                case .retry(let after, let failure):
                    guard !once, Upload.isTransient(failure), waited + after <= maxWait else { return (total, s) }
                    FileHandle.standardError.write(Data("kioskctl: \(failure); retrying in \(Upload.seconds(after)) s\n".utf8))
                    try? await Task.sleep(for: after)
                    waited += after
                }
            }
        }
        report(total)
        if case .retry(_, let failure) = last.outcome {
            let status: ExitStatus
            switch failure {
            case .unreachable, .timedOut, .serverError, .throttled: status = .serviceUnavailable
            case .store: status = .storage
            default: status = .refused
            }
            try fail(CommandFailure(message: "\(failure); \(last.queued) records stay queued (nothing is lost)", status: status))
        }
    }

    func report(_ s: DrainSummary) {
        if json {
            var o: [String: Any] = [
                "requests": s.requests, "accepted": s.accepted, "duplicates": s.duplicates, "queued": s.queued,
                "rejected": s.rejected.map { ["record_id": $0.recordID, "reason": $0.reason] },
            ]
            if let f = s.failure { o["failure"] = ["code": f.code, "message": f.description] }
            printJSON(o)
            return
        }
        print("uploaded: \(s.accepted) accepted (\(s.duplicates) already at the hub), \(s.rejected.count) rejected, \(s.queued) still queued; \(s.requests) requests")
        for r in s.rejected {
            print("  REJECTED \(r.recordID): \(r.reason) (kept on the kiosk; report to the platform)")
        }
    }

    /// Worth waiting for: the hub may come back by itself.
    static func isTransient(_ f: UploadFailure) -> Bool {
        switch f {
        case .unreachable, .timedOut, .serverError, .throttled: return true
        default: return false
        }
    }

    static func seconds(_ d: Duration) -> String {
        let c = d.components
        return String(format: "%.1f", Double(c.seconds) + Double(c.attoseconds) / 1e18)
    }
}

/// Runs async work from this synchronous command (ArgumentParser calls `run()` on the main
/// thread; the work runs on the concurrency pool while the main thread waits).
func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        let value = await body()
        box.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return box.withLock { $0.take()! }
}
