import Foundation
import Synchronization

/// A one-slot wake-up for one waiter: `signal()` from any thread (also synchronous code,
/// such as the ledger right after a record is committed); `wait()` returns on the next
/// signal, at once if a signal came while nobody waited, or when the waiting task is
/// cancelled. Signals while nobody waits collapse into one.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func signal() {
        let woken: CheckedContinuation<Void, Never>? = state.withLock { s in
            if let w = s.waiter { s.waiter = nil; return w }
            s.pending = true
            return nil
        }
        woken?.resume()
    }

    /// Forgets a signal that came while nobody waited.
    func clear() {
        state.withLock { $0.pending = false }
    }

    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now: Bool = state.withLock { s in
                    precondition(s.waiter == nil, "one waiter at a time")
                    if s.pending || Task.isCancelled {
                        s.pending = false
                        return true
                    }
                    s.waiter = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let w: CheckedContinuation<Void, Never>? = state.withLock { s in
                defer { s.waiter = nil }
                return s.waiter
            }
            w?.resume()
        }
    }
}
