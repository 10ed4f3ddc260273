import KioskProtocol
import Foundation
import Logging
import Synchronization
import Testing
@testable import HubHTTP
@testable import HubStore
@testable import HubRules

/// Every line logged, message and metadata, for a test to search.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])
    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            let all = metadata.merging(extra ?? [:]) { $1 }
            log.lines.withLock { $0.append("\(level) \(message) \(all)") }
        }
    }

    var logger: Logger { Logger(label: "captured") { _ in Handler(log: self) } }
}

/// Issue 21 item 6: the hub's logs and refusal details never carry a whole card number or
/// person reference.
@Suite struct MaskingTests {
    @Test("free text: card and identity numbers show their first and last 4, a person reference its first and last 4; a digest stays whole")
    func freeText() {
        let digest = String(repeating: "ab", count: 32)
        #expect(Masking.text("card 3307820000000017 of 8919243b61b2010949797f63b0328dfc, id 33078219500101123X, sha \(digest)")
                == "card 3307********0017 of 8919…8dfc, id 3307**********123X, sha \(digest)")
        #expect(Masking.text("seq 12 of 500 fen") == "seq 12 of 500 fen")
        // A reference with 15 digits in a row is still a reference, masked whole.
        let digits = "8919243" + String(repeating: "0", count: 17) + "b0328dfc"
        #expect(digits.count == 32 && Masking.text("person \(digits)") == "person 8919…8dfc")
    }

    @Test("a refusal naming a card (bad_card_ack, no key in the roster): the answer's detail and the hub's log carry the masked number only")
    func refusalsAndLogsMasked() async throws {
        var roster = try snapshotRoster()
        try roster.add(record: ["type": "card", "card_number": HubCase.card17, "person_ref": HubCase.ref17, "status": "active"], path: "test", line: 1)
        let log = CapturedLog()
        let hub = SettlementHub(database: try testHubDatabase("masking"), roster: roster, now: { vectorHubClock }, logger: log.logger)
        let running = try await hub.start()
        defer { Task { await running.stop() } }
        let body = HubCase.batch([try HubCase.text(try HubCase.subsidy(seq: 1))], device: Fixtures.deviceID)
        let (status, answer, text) = try await post("\(running.url)/v1/devices/\(Fixtures.deviceID)/batches", body,
                                                    signature: try HubCase.signature(body, by: Fixtures.deviceID))
        #expect(status == 200)
        let result = try #require((answer?["results"] as? [[String: Any]])?.first)
        #expect(result["reason"] as? String == "bad_card_ack")
        let detail = try #require(result["detail"] as? String)
        #expect(detail.contains(Masking.cardNumber(HubCase.card17)) && !text.contains(HubCase.card17), "\(detail)")
        #expect(!log.text.contains(HubCase.card17) && log.text.contains("bad_card_ack"), "\(log.text)")
        #expect(try hub.database.answer("\(Fixtures.deviceID)-1")?.reason == "bad_card_ack")
    }
}
