import Foundation

/// A one-slot wake-up for one waiter: `signal()` from any thread (also synchronous code,
/// such as the ledger right after a record is committed); `wait()` returns on the next
/// signal, at once if a signal came while nobody waited, or when the waiting task is
/// cancelled. Signals while nobody waits collapse into one.
final class WakeSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = false
    private var waiter: CheckedContinuation<Void, Never>?

    func signal() {
        lock.lock()
        if let w = waiter {
            waiter = nil
            lock.unlock()
            w.resume()
        } else {
            pending = true
            lock.unlock()
        }
    }

    /// Forgets a signal that came while nobody waited.
    func clear() {
        lock.lock()
        pending = false
        lock.unlock()
    }

    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                lock.lock()
                precondition(waiter == nil, "one waiter at a time")
                if pending || Task.isCancelled {
                    pending = false
                    lock.unlock()
                    c.resume()
                    return
                }
                waiter = c
                lock.unlock()
            }
        } onCancel: {
            lock.lock()
            let w = waiter
            waiter = nil
            lock.unlock()
            w?.resume()
        }
    }
}
