import CoreMetrics
import Foundation
import Synchronization

/// A metrics backend that keeps the values, injected into one uploader (no global bootstrap).
final class TestMetrics: MetricsFactory, Sendable {
    struct Values {
        var counters: [String: Int64] = [:]
        var recorders: [String: Double] = [:]
    }
    let values = Mutex(Values())

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        dimensions.isEmpty ? label : label + "{" + dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
        values.withLock { $0.counters[Self.key(label, dimensions)] ?? 0 }
    }

    func recorded(_ label: String) -> Double? {
        values.withLock { $0.recorders[label] }
    }

    final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
        let key: String
        let owner: TestMetrics
        init(_ key: String, _ owner: TestMetrics) { self.key = key; self.owner = owner }
        func increment(by amount: Int64) { owner.values.withLock { $0.counters[key, default: 0] += amount } }
        func reset() { owner.values.withLock { $0.counters[key] = 0 } }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { owner.values.withLock { $0.recorders[key] = value } }
        func recordNanoseconds(_ duration: Int64) {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler { Handler(Self.key(label, dimensions), self) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler { Handler(Self.key(label, dimensions), self) }
    func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler { Handler(Self.key(label, dimensions), self) }
    func destroyCounter(_ handler: CounterHandler) {}
    func destroyRecorder(_ handler: RecorderHandler) {}
    func destroyTimer(_ handler: TimerHandler) {}
}
