import Foundation
import Synchronization

/// A wait in a test that went past its deadline: the test fails with what it waited for,
/// the run carries on.
public struct DeadlineExceeded: Error, CustomStringConvertible {
    public var what: String
    public var seconds: Double
    public init(_ what: String, seconds: Double) { self.what = what; self.seconds = seconds }
    public var description: String { "no \(what) within \(seconds) s" }
}

/// Runs `operation` and returns what it returns, or throws `DeadlineExceeded` once `seconds`
/// have passed without an answer (a thrown error fails the test that called it).
///
/// The operation runs in a task of its own, cancelled at the deadline; the caller does not
/// wait for it to end after that, so an operation that ignores cancellation (a blocking
/// call, a task that never ends) cannot hang the test run — it is left behind instead.
public func withDeadline<T: Sendable>(seconds: Double, _ what: String,
                                      _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = DeadlineRace<T>()
    let work = Task {
        do { race.finish(.success(try await operation())) } catch { race.finish(.failure(error)) }
    }
    // The timer is a dispatch timer, not a task: it fires even when blocking calls hold every
    // thread of the concurrency pool.
    let timer = DispatchWorkItem { race.finish(.failure(DeadlineExceeded(what, seconds: seconds))) }
    DispatchQueue.global().asyncAfter(deadline: .now() + max(0, seconds), execute: timer)
    defer { timer.cancel(); work.cancel() }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { race.wait($0) }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The first of the operation, the timer or a cancellation to finish resumes the caller, once.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, Error>?
        var continuation: CheckedContinuation<T, Error>?
    }
    private let state = Mutex(State())

    func wait(_ c: CheckedContinuation<T, Error>) {
        let ready: Result<T, Error>? = state.withLock { s in
            if let r = s.result { return r }
            s.continuation = c
            return nil
        }
        if let ready { c.resume(with: ready) }
    }

    func finish(_ r: Result<T, Error>) {
        let waiting: CheckedContinuation<T, Error>?? = state.withLock { s in
            guard s.result == nil else { return .none }
            s.result = r
            defer { s.continuation = nil }
            return .some(s.continuation)
        }
        if case .some(.some(let c)) = waiting { c.resume(with: r) }
    }
}
