import CoreMetrics
import Foundation

/// A metrics backend that keeps the values, injected into one uploader (no global bootstrap).
final class TestMetrics: MetricsFactory, @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Int64] = [:]
    private var recorders: [String: Double] = [:]

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        dimensions.isEmpty ? label : label + "{" + dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
        lock.lock(); defer { lock.unlock() }
        return counters[Self.key(label, dimensions)] ?? 0
    }

    func recorded(_ label: String) -> Double? {
        lock.lock(); defer { lock.unlock() }
        return recorders[label]
    }

    final class Handler: CounterHandler, RecorderHandler, TimerHandler, @unchecked Sendable {
        let key: String
        let owner: TestMetrics
        init(_ key: String, _ owner: TestMetrics) { self.key = key; self.owner = owner }
        func increment(by amount: Int64) { owner.lock.lock(); owner.counters[key, default: 0] += amount; owner.lock.unlock() }
        func reset() { owner.lock.lock(); owner.counters[key] = 0; owner.lock.unlock() }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { owner.lock.lock(); owner.recorders[key] = value; owner.lock.unlock() }
        func recordNanoseconds(_ duration: Int64) {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler { Handler(Self.key(label, dimensions), self) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler { Handler(Self.key(label, dimensions), self) }
    func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler { Handler(Self.key(label, dimensions), self) }
    func destroyCounter(_ handler: CounterHandler) {}
    func destroyRecorder(_ handler: RecorderHandler) {}
    func destroyTimer(_ handler: TimerHandler) {}
}
