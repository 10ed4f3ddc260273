import Foundation
import Synchronization
import KioskCore
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

extension Liveness {
    /// The store answers a read (its installed snapshot's header; none installed is fine).
    static func store(_ device: Device) -> LivenessCheck {
        LivenessCheck(name: "store") { done in
            DispatchQueue.global().async {
                do {
                    // Issue 23 item 5: the store's file replaced, removed or overwritten starves the watchdog.
                    guard device.store.fileProblem() == nil else { done(false); return }
                    _ = try device.store.installedSnapshot(); done(true)
                } catch { done(false) }
            }
        }
    }

    /// The card worker's queue runs a no-op: no session is stuck in PC/SC.
    static func cardWorker(_ engine: Engine) -> LivenessCheck {
        LivenessCheck(name: "card_worker") { done in engine.probe { done(true) } }
    }

    /// The HTTP server answers `GET /livez` on loopback: the event loop accepts, reads and
    /// writes (and the daemon still has descriptors to accept with).
    static func http(port: Int, timeout: Duration) -> LivenessCheck {
        LivenessCheck(name: "http") { done in
            DispatchQueue.global().async { done(selfRequest(port: port, timeout: timeout)) }
        }
    }

    /// Whether kioskd's own `/livez` answers 200 on loopback within `timeout`.
    static func selfRequest(port: Int, timeout: Duration) -> Bool {
        Liveness.selfRequest(port: port, path: "/livez", timeout: timeout).map { String(decoding: $0, as: UTF8.self) == "HTTP/1.1 200" } ?? false
    }
}
