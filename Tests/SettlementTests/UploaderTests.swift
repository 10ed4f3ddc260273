import Foundation
import HubFaults
import Glibc
import KioskCore
import KioskStore
@testable import Settlement
import HubHTTP
import HubStore
import TestVectors
import Testing

@Suite("Uploader against the real hub on loopback")
struct UploaderTests {
    @Test("accepted: every record marked accepted with received_at; the hub holds the exact bodies")
    func uploadAccepted() async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            let records = try queueAlerts(device, 7)
            let metrics = TestMetrics()
            let uploader = try makeUploader(device, metricsFactory: metrics)
            let summary = await uploader.drainOnce()
            #expect(summary.outcome == .drained)
            #expect(summary.accepted == 7 && summary.duplicates == 0 && summary.rejected.isEmpty && summary.queued == 0)
            #expect(summary.requests == 1)
            let after = try device.store.records(limit: 100)
            #expect(after.allSatisfy { $0.status == .accepted && $0.receivedAt == "2026-11-22T03:01:00Z" })
            let held = try hub.hub.database.records(deviceID: Fixtures.deviceID)
            #expect(held.map(\.body) == records.map(\.body), "byte for byte what the kiosk stored")
            #expect(metrics.counter("settlement_records_accepted_total") == 7)
            #expect(metrics.counter("settlement_batches_accepted_total") == 1)
            #expect(metrics.recorded("settlement_queue_length") == 0)

            // Nothing queued: a drain sends nothing.
            let idle = await uploader.drainOnce()
            #expect(idle.requests == 0 && idle.outcome == .drained)
        }
    }

    @Test("received_at with a fraction is stored rounded up to the second")
    func receivedAtRoundedUp() async throws {
        try await withHub(faults: HubFaults(fractionalReceivedAt: true)) { hub in
            hub.clock.now = Date(timeIntervalSince1970: 1_795_316_401.25) // 03:00:01.250Z
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 2)
            let summary = try await makeUploader(device).drainOnce()
            #expect(summary.accepted == 2)
            #expect(try device.store.records().map(\.receivedAt) == ["2026-11-22T03:00:02Z", "2026-11-22T03:00:02Z"])
        }
    }

    @Test("lost answer: the batch is sent again, the hub says duplicate with the original time, stored exactly once")
    func lostAnswerDuplicate() async throws {
        try await withHub(faults: HubFaults(failFirst: 1, failure: .storeThenStatus(502))) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 5)
            let uploader = try makeUploader(device)
            let first = await uploader.drainOnce()
            #expect(first.failure == .serverError(status: 502))
            #expect(first.queued == 5)
            #expect(try device.store.queuedCount() == 5)
            #expect(try hub.hub.database.recordCount() == 5, "the hub stored them; only the answer was lost")
            let original = try #require(try hub.hub.database.record("KSK-TEST-0001-1")).receivedAt

            hub.clock.now = testEpoch.addingTimeInterval(7200)
            let second = await uploader.drainOnce()
            #expect(second.outcome == .drained)
            #expect(second.accepted == 5 && second.duplicates == 5)
            #expect(try device.store.records().allSatisfy { $0.status == .accepted && $0.receivedAt == original })
            #expect(try hub.hub.database.recordCount() == 5)
            #expect(await uploader.failureStreak == 0)
        }
    }

    @Test("conflict: same record_id with other content is rejected, kept, logged; later records still go")
    func conflictRejected() async throws {
        try await withHub { hub in
            // A device whose store was lost and re-provisioned: its sequence starts again at 1.
            let original = try provisionDevice(hubURL: hub.url)
            try queueAlerts(original, 3, detail: "original")
            #expect(try await makeUploader(original).drainOnce().accepted == 3)

            let reinstalled = try provisionDevice(hubURL: hub.url)
            let records = try queueAlerts(reinstalled, 6, detail: "after reinstall")
            let metrics = TestMetrics()
            let summary = try await makeUploader(reinstalled, metricsFactory: metrics).drainOnce()
            #expect(summary.outcome == .drained)
            #expect(summary.rejected.map(\.recordID) == records.prefix(3).map(\.recordID))
            #expect(summary.rejected.allSatisfy { $0.reason == "conflict" })
            #expect(summary.accepted == 3)
            let after = try reinstalled.store.records()
            #expect(after.map(\.status) == [.rejected, .rejected, .rejected, .accepted, .accepted, .accepted])
            #expect(after.prefix(3).allSatisfy { $0.rejectReason == "conflict" && $0.receivedAt == nil })
            #expect(after.map(\.body) == records.map(\.body), "kept as made")
            #expect(metrics.counter("settlement_records_rejected_total") == 3)
            #expect(try hub.hub.database.record("KSK-TEST-0001-1")?.body.contains("original") == true)
            #expect(try hub.hub.database.recordCount() == 6)
        }
    }

    @Test("hub down (connection refused): nothing lost, backoff asked")
    func hubDown() async throws {
        // A port bound but not listening: connections to it are refused for as long as the
        // socket is held (a stopped hub's port could be taken by another test's hub meanwhile).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        })
        let url = "http://127.0.0.1:\(UInt16(bigEndian: addr.sin_port))"
        let device = try provisionDevice(hubURL: url)
        try queueAlerts(device, 3)
        let metrics = TestMetrics()
        let summary = try await makeUploader(device, random: RandomSequence([0]), metricsFactory: metrics).drainOnce()
        guard case .unreachable? = summary.failure else {
            Issue.record("expected unreachable, got \(String(describing: summary.outcome))")
            return
        }
        #expect(summary.retryAfter == .seconds(1))
        #expect(try device.store.queuedCount() == 3)
        #expect(try device.store.records().allSatisfy { $0.receivedAt == nil })
        #expect(metrics.counter("settlement_batches_failed_total", [("reason", "unreachable")]) == 1)
    }

    @Test("slow hub beyond the timeout: a failure, nothing lost; the next drain gets duplicates")
    func slowHubTimeout() async throws {
        try await withHub(faults: HubFaults(delay: .seconds(4))) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 4)
            let uploader = try makeUploader(device, timeout: .milliseconds(500))
            // Gave up at the timeout, not when the hub answered: timed out, nothing marked (had
            // it waited for the answer it would have been accepted). Bounded, not timed.
            let summary = try await withDeadline(seconds: 60, "end of drainOnce with a 0.5 s request timeout") { await uploader.drainOnce() }
            #expect(summary.failure == .timedOut)
            #expect(try device.store.queuedCount() == 4)

            hub.hub.faults = .none
            // A generous timeout for the second drain: on a loaded machine (CI runs the
            // suites side by side) the healthy hub can take longer than 0.5 s.
            let again = await (try makeUploader(device, timeout: .seconds(30))).drainOnce()
            #expect(again.outcome == .drained)
            #expect(again.accepted == 4)
            #expect(try hub.hub.database.recordCount() == 4)
        }
    }

    @Test("5xx: backoff grows exponentially, jittered within bounds, from 1 s to 5 min; reset by success")
    func serverErrorBackoff() async throws {
        try await withHub(faults: HubFaults(failFirst: 12, failure: .status(500, retryAfter: nil))) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 2)
            let randoms = [0.0, 0.999, 0.5, 0.25, 0.0, 0.999, 0.5, 0.75, 0.1, 0.9, 0.0, 0.999]
            let uploader = try makeUploader(device, random: RandomSequence(randoms))
            var delays: [Duration] = []
            for _ in 0..<12 {
                let s = await uploader.drainOnce()
                #expect(s.failure == .serverError(status: 500))
                delays.append(try #require(s.retryAfter))
            }
            for (n, d) in delays.enumerated() {
                let base = min(300.0, pow(2.0, Double(n)))
                let seconds = d.seconds
                #expect(seconds >= max(1, 0.75 * base) - 0.001 && seconds <= min(300, 1.25 * base) + 0.001, "failure \(n + 1): \(seconds) s")
                let expected = min(300, max(1, base * (0.75 + 0.5 * randoms[n])))
                #expect(abs(seconds - expected) < 0.002)
            }
            #expect(try #require(delays.last) == .seconds(300))
            #expect(delays[5] > delays[3], "grows")
            #expect(try device.store.queuedCount() == 2)

            let ok = await uploader.drainOnce()
            #expect(ok.outcome == .drained)
            #expect(await uploader.failureStreak == 0)
        }
    }

    @Test("Backoff bounds for any streak and jitter")
    func backoffBounds() {
        let b = Backoff()
        for n in 1...80 {
            for r in [0.0, 0.3, 0.999999] {
                let d = b.delay(failures: n, random: r)
                #expect(d >= .seconds(1) && d <= .seconds(300))
            }
        }
        #expect(b.delay(failures: 1, random: 0) == .seconds(1))
        #expect(b.delay(failures: 3, random: 0.5) == .seconds(4))
        #expect(b.delay(failures: 40, random: 0.999) == .seconds(300))
    }

    @Test("413: the batch is split in half until the hub takes it; all delivered")
    func tooLargeSplits() async throws {
        try await withHub(limits: HubLimits(maxRecords: 3)) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 20)
            let summary = try await makeUploader(device).drainOnce()
            #expect(summary.outcome == .drained)
            #expect(summary.accepted == 20)
            #expect(summary.splits >= 2)
            #expect(try hub.hub.database.recordCount() == 20)
            #expect(try device.store.queuedCount() == 0)
        }
    }

    @Test("413 on bytes too; a single record still too large is kept and backed off")
    func singleRecordTooLarge() async throws {
        try await withHub(limits: HubLimits(maxRecords: 500, maxBytes: 1500)) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 6)
            let big = try device.store.recordAlert(device: device.context, code: "printer_fault", cardNumber: nil,
                                                   detail: String(repeating: "z", count: 2000), now: testEpoch)
            try queueAlerts(device, 2)
            let uploader = try makeUploader(device, random: RandomSequence([0]))
            let summary = await uploader.drainOnce()
            #expect(summary.accepted == 6)
            #expect(summary.failure == .recordTooLarge(recordID: big.recordID))
            #expect(summary.retryAfter == .seconds(1))
            #expect(summary.queued == 3)
            #expect(try device.store.record(big.recordID)?.status == .queued)
        }
    }

    @Test("429 with Retry-After: drainOnce says so, and run() waits exactly that long, then delivers")
    func retryAfterHonoured() async throws {
        try await withHub(faults: HubFaults(failFirst: 1, failure: .status(429, retryAfter: 7))) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 3)
            let probe = try await makeUploader(device).drainOnce()
            #expect(probe.failure == .throttled(status: 429, retryAfter: .seconds(7)))
            #expect(probe.retryAfter == .seconds(7))

            hub.hub.faults = HubFaults(failFirst: hub.hub.batchRequests + 1, failure: .status(503, retryAfter: 11))
            let sleeper = SleepRecorder()
            let uploader = try makeUploader(device, sleeper: sleeper)
            let task = Task { await uploader.run() }
            let delivered = try await eventually { try device.store.queuedCount() == 0 }
            task.cancel()
            try await withDeadline(seconds: 30, "end of uploader.run() once cancelled") { await task.value }
            #expect(delivered)
            let sleeps = await sleeper.sleeps
            #expect(sleeps.first == .seconds(11))
        }
    }

    @Test("503 without Retry-After: backoff")
    func unavailableWithoutRetryAfter() async throws {
        try await withHub(faults: HubFaults(failFirst: 1, failure: .status(503, retryAfter: nil))) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 1)
            let s = try await makeUploader(device, random: RandomSequence([0])).drainOnce()
            #expect(s.failure == .throttled(status: 503, retryAfter: nil))
            #expect(s.retryAfter == .seconds(1))
        }
    }

    @Test("400: kept, the hub's message reported, backoff")
    func badRequest() async throws {
        try await withHub(faults: HubFaults(failFirst: 1, failure: .status(400, retryAfter: nil))) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 2)
            let s = try await makeUploader(device, random: RandomSequence([0])).drainOnce()
            #expect(s.failure == .badRequest(message: "test fault 400"))
            #expect(s.retryAfter == .seconds(1))
            #expect(try device.store.queuedCount() == 2)
        }
    }

    @Test("401: records kept, slow retry, an alert raised once per streak (also across restarts)")
    func refusedAlertsOnce() async throws {
        var wrongKey = Roster()
        try wrongKey.add(deviceID: Fixtures.deviceID, publicKey: Fixtures.publicKey("KSK-TEST-0002"))
        try await withHub(roster: wrongKey) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 3)
            let metrics = TestMetrics()
            let uploader = try makeUploader(device, metricsFactory: metrics)
            let first = await uploader.drainOnce()
            guard case .refused(401, let message)? = first.failure else {
                Issue.record("expected 401, got \(String(describing: first.outcome))")
                return
            }
            #expect(message.contains("X-Signature"))
            #expect(first.retryAfter == .seconds(300))
            func alerts() throws -> [StoredRecord] {
                try device.store.records().filter { $0.kind == .alert && ($0.wire["code"] as? String) == "hub_refused_device" }
            }
            #expect(try alerts().count == 1)
            #expect(try device.store.queuedCount() == 4)

            _ = await uploader.drainOnce()
            _ = await uploader.drainOnce()
            #expect(try alerts().count == 1, "once per streak")
            // A restarted uploader (kioskd restart, kioskctl upload) does not raise another while one waits.
            _ = try await makeUploader(device).drainOnce()
            #expect(try alerts().count == 1)
            #expect(metrics.counter("settlement_batches_failed_total", [("reason", "refused")]) == 3)

            // The platform registers the right key: everything goes, the alert too.
            hub.hub.roster = try snapshotRoster()
            let ok = await uploader.drainOnce()
            #expect(ok.outcome == .drained && ok.accepted == 4)
            #expect(try hub.hub.database.records().contains { $0.body.contains("hub_refused_device") })
        }
    }

    @Test("nonsense 200 answers: nothing is marked, backoff", arguments: HubFaults.Nonsense.allCases)
    func nonsenseAnswers(_ kind: HubFaults.Nonsense) async throws {
        try await withHub(faults: HubFaults(failFirst: 1, failure: .nonsense(kind))) { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 4)
            let uploader = try makeUploader(device, random: RandomSequence([0]))
            let s = await uploader.drainOnce()
            guard case .nonsense(let why)? = s.failure else {
                Issue.record("\(kind): expected nonsense, got \(String(describing: s.outcome))")
                return
            }
            switch kind {
            case .wrongCount: #expect(why == .wrongCount(expected: 4, got: 3))
            case .wrongIDs: #expect(why == .wrongRecordID(index: 0, expected: "KSK-TEST-0001-1", got: "KSK-TEST-0001-4x"))
            case .notJSON: #expect(why == .notJSON)
            case .unknownStatus: #expect(why == .unknownStatus(recordID: "KSK-TEST-0001-1", status: "stored"))
            case .badTime: #expect(why == .badReceivedAt(recordID: "KSK-TEST-0001-1", value: "yesterday"))
            }
            #expect(s.retryAfter == .seconds(1))
            #expect(try device.store.records().allSatisfy { $0.status == .queued && $0.receivedAt == nil && $0.rejectReason == nil })
            // The hub did store them; the next honest answer says duplicate.
            let again = await uploader.drainOnce()
            #expect(again.accepted == 4 && again.duplicates == 4)
        }
    }

    @Test("answer checks: same count, same ids in order, known statuses")
    func answerCheck() throws {
        let ids = ["A-1", "A-2"]
        func check(_ s: String) -> Result<BatchAnswer.Checked, BatchAnswer.Nonsense> {
            Result { () throws(BatchAnswer.Nonsense) in try BatchAnswer.check(Array(s.utf8), recordIDs: ids) }
        }
        let good = check(#"{"results":[{"record_id":"A-1","status":"duplicate","received_at":"2026-11-22T03:00:00Z"},{"record_id":"A-2","status":"rejected","reason":"conflict"}]}"#)
        #expect(try good.get().duplicates == 1)
        #expect(try good.get().results[1].outcome == .rejected(reason: "conflict"))
        #expect(throws: BatchAnswer.Nonsense.noResults) { try check(#"{"result":[]}"#).get() }
        #expect(throws: BatchAnswer.Nonsense.wrongRecordID(index: 0, expected: "A-1", got: "A-2")) {
            try check(#"{"results":[{"record_id":"A-2","status":"accepted","received_at":"2026-11-22T03:00:00Z"},{"record_id":"A-1","status":"accepted","received_at":"2026-11-22T03:00:00Z"}]}"#).get()
        }
        #expect(throws: BatchAnswer.Nonsense.missingReason(recordID: "A-1")) {
            try check(#"{"results":[{"record_id":"A-1","status":"rejected"},{"record_id":"A-2","status":"rejected","reason":"x"}]}"#).get()
        }
        #expect(throws: BatchAnswer.Nonsense.badReceivedAt(recordID: "A-1", value: nil)) {
            try check(#"{"results":[{"record_id":"A-1","status":"accepted"},{"record_id":"A-2","status":"rejected","reason":"x"}]}"#).get()
        }
    }

    @Test("run(): idle until notify() (no polling), then drains; cancellable")
    func runWokenByNotify() async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            let sleeper = SleepRecorder()
            let uploader = try makeUploader(device, sleeper: sleeper, idleRecheck: .seconds(3600))
            let task = Task { await uploader.run() }
            // Idle: one drain found nothing, then it waits (an hour, or a notify).
            #expect(await eventually { await sleeper.sleeps == [.seconds(3600)] })
            try await Task.sleep(for: .milliseconds(200))
            #expect(hub.hub.batchRequests == 0)

            try queueAlerts(device, 3)
            uploader.notify()
            #expect(try await eventually { try device.store.queuedCount() == 0 })
            #expect(hub.hub.batchRequests == 1)

            try queueAlerts(device, 2)
            uploader.notify()
            uploader.notify()
            #expect(try await eventually { try device.store.queuedCount() == 0 })
            task.cancel()
            try await withDeadline(seconds: 30, "end of uploader.run() once cancelled") { await task.value }
            #expect(try hub.hub.database.recordCount() == 5)
        }
    }

    @Test("concurrent drainOnce calls are serialised: each record sent once")
    func concurrentDrains() async throws {
        try await withHub { hub in
            let device = try provisionDevice(hubURL: hub.url)
            try queueAlerts(device, 10)
            let uploader = try makeUploader(device) { $0.maxRecords = 2 }
            async let a = uploader.drainOnce()
            async let b = uploader.drainOnce()
            let (sa, sb) = await (a, b)
            #expect(sa.accepted + sb.accepted == 10)
            #expect(sa.duplicates + sb.duplicates == 0)
            #expect(hub.hub.batchRequests == 5)
        }
    }
}
