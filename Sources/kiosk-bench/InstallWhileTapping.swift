import ArgumentParser
import Crypto
import KioskProtocol
import Foundation
import KioskStore
import Settlement
import Synchronization
import TestVectors

/// Issue 9: a large full installed while taps go on. A "tap" here is the store's part of a
/// card session: the snapshot read of a decision (`view`) and one write transaction (a
/// record, as a commit makes). Its latency is measured at rest before the install (the
/// floor), during it, and at rest after, in the same process; the ratios during/rest are
/// the figure. Prints figures; asserts nothing.
struct InstallWhileTapping: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-while-tapping",
        abstract: "Install a full snapshot into a store that already holds one, while taps go on; tap latency at rest vs during.")

    @Option(help: "The base snapshot (installed first, not timed).") var base: String
    @Option(help: "The newer full snapshot installed while tapping (a file, or with --hub its id: synced from the hub).") var file: String
    @Option(help: "Sync the newer snapshot from this hub (downloaded and installed by the kiosk's sync round) instead of a local file. The hub must know the bench device (kiosk-bench bench-device-key).")
    var hub: String?
    @Option(help: "Store file (made fresh).") var db: String
    @Option(help: "Persons in the snapshots (taps pick card numbers among them).") var persons: Int
    @Option(help: "Seconds of taps at rest before and after.") var restSeconds = 3.0
    @Option(help: "The kiosk's clock (RFC 3339).") var now = "2026-11-22T03:00:00Z"

    func run() throws {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + suffix) }
        guard let clock = Timestamp.date(now) else { throw ValidationError("--now is not an RFC 3339 time") }
        let store = try KioskStore(path: db)
        let trusted = try TestAuthority.trusted()
        let device = DeviceContext(deviceID: "KSK-TEST-0001", institution: "330782-H01")
        _ = try store.installSnapshot(at: URL(fileURLWithPath: base), trustedAuthorities: trusted, now: clock)

        var rng = SplitMix64(seed: 7)
        var tapNumber = 0
        func tap() throws -> Double {
            tapNumber += 1
            let card = SyntheticPopulation.cardNumber(Int(rng.next() % UInt64(persons)))
            let t0 = monotonicSeconds()
            _ = try store.view(cardNumber: card, period: "2026")
            _ = try store.recordAlert(device: device, code: "bench_tap", cardNumber: nil, detail: "tap \(tapNumber)", now: clock)
            return (monotonicSeconds() - t0) * 1e6
        }
        func taps(for seconds: Double) throws -> [Double] {
            var out: [Double] = []
            let end = monotonicSeconds() + seconds
            while monotonicSeconds() < end { out.append(try tap()) }
            return out
        }

        let before = try taps(for: restSeconds)
        let installing = Atomic<Bool>(true)
        let outcome = Mutex<String>("")
        let done = DispatchSemaphore(value: 0)
        let (file, t0) = (self.file, monotonicSeconds())
        let sync: SnapshotSync? = try hub.map { hub in
            SnapshotSync(store: store, device: BenchDeviceKey.device, signingKey: BenchDeviceKey.key, trustedAuthorities: trusted,
                         directory: URL(fileURLWithPath: db + ".sync"), configuration: try SyncConfiguration(hubURL: hub))
        }
        Thread {
            if let sync {
                // The sync round: manifest, download (resumable, checked), then the installer.
                let r = try? waitFor { await sync.round() }
                if let r, r.failure == nil, let last = r.installed.last {
                    outcome.withLock { $0 = String(format: "sync_seconds=%.2f (download and install) installed=%@ records=%d",
                                                   monotonicSeconds() - t0, last.header.snapshotID, last.records) }
                } else {
                    outcome.withLock { $0 = "sync_failed=\(r?.failure.map { "\($0)" } ?? "nothing installed")" }
                }
            } else {
                do {
                    let r = try store.installSnapshot(at: URL(fileURLWithPath: file), trustedAuthorities: trusted, now: clock)
                    outcome.withLock { $0 = String(format: "install_seconds=%.2f records=%d", monotonicSeconds() - t0, r.records) }
                } catch {
                    outcome.withLock { $0 = "install_failed=\(error)" }
                }
            }
            installing.store(false, ordering: .releasing)
            done.signal()
        }.start()
        var during: [Double] = []
        var failures = 0
        while installing.load(ordering: .acquiring) {
            do { during.append(try tap()) } catch { failures += 1 }
        }
        done.wait()
        let after = try taps(for: restSeconds)
        print(outcome.withLock { $0 } + " tap_failures_during=\(failures)")
        reportLatency("tap_at_rest_before", before)
        reportLatency("tap_during_install", during)
        reportLatency("tap_at_rest_after", after)
        let rest = (before + after).sorted()
        let d = during.sorted()
        if !rest.isEmpty && !d.isEmpty {
            func p(_ s: [Double], _ q: Int) -> Double { s[min(s.count - 1, s.count * q / 100)] }
            print(String(format: "ratio_during_vs_rest p50=%.2f p99=%.2f max=%.2f (rest before p99 %.0f us, after %.0f us)",
                         p(d, 50) / p(rest, 50), p(d, 99) / p(rest, 99), d[d.count - 1] / rest[rest.count - 1],
                         p(before.sorted(), 99), p(after.sorted(), 99)))
        }
    }
}

/// The bench's kiosk identity for `install-while-tapping --hub` (a BENCH key, not a secret):
/// prints `ID=PUBLIC_KEY,INSTITUTION` for the hub's `--device`.
struct BenchDeviceKey: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-device-key",
                                                    abstract: "Print the bench kiosk's device entry for settlement-hub --device.")
    static let key = try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(repeating: 0x42, count: 32))
    static let device = DeviceContext(deviceID: "KSK-BENCH-0001", institution: "330782-H01")

    func run() throws {
        print("\(Self.device.deviceID)=\(Self.key.publicKey.rawRepresentation.base64EncodedString()),\(Self.device.institution)")
    }
}
