import Foundation
import KioskStore

/// What the kiosk screen shows, published to the browser over SSE as JSON.
struct ScreenState: Codable, Sendable, Equatable {
    struct Bill: Codable, Sendable, Equatable {
        var billReference: String
        var billFen: Int64
        enum CodingKeys: String, CodingKey { case billReference = "bill_reference", billFen = "bill_fen" }
    }
    struct ProgramLine: Codable, Sendable, Equatable {
        var code: String
        var name: String
        var remainingFen: Int64?
        var limitFen: Int64?
        var matters: [[String: String]]?
        enum CodingKeys: String, CodingKey { case code, name, remainingFen = "remaining_fen", limitFen = "limit_fen", matters }
    }
    struct Result: Codable, Sendable, Equatable {
        /// check, charge, legal_aid
        var action: String
        var code: String
        var message: String
        var detail: String
        var cardNumber: String?
        var holder: String?
        var cardType: String?
        var programs: [ProgramLine] = []
        var billFen: Int64?
        var subsidyFen: Int64?
        var patientPaysFen: Int64?
        var records: [String] = []
        var matter: String?
        var receipt: String?
        enum CodingKeys: String, CodingKey {
            case action, code, message, detail, cardNumber = "card_number", holder, cardType = "card_type", programs
            case billFen = "bill_fen", subsidyFen = "subsidy_fen", patientPaysFen = "patient_pays_fen", records, matter, receipt
        }
    }

    /// idle, reading, result, error
    var phase: String = "idle"
    var profile: String
    var institution: String
    var deviceID: String
    var reader: String?
    var cardPresent = false
    var bill: Bill?
    var result: Result?
    var notice: String?
    var updatedAt: String = Timestamp.string(Date())

    enum CodingKeys: String, CodingKey {
        case phase, profile, institution, deviceID = "device_id", reader, cardPresent = "card_present", bill, result, notice
        case updatedAt = "updated_at"
    }

    var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

/// The screen's state and its SSE subscribers: every change reaches every open page.
actor ScreenHub {
    private(set) var state: ScreenState
    private var subscribers: [UUID: AsyncStream<ScreenState>.Continuation] = [:]

    init(_ initial: ScreenState) { state = initial }

    func update(_ change: (inout ScreenState) -> Void) {
        change(&state)
        state.updatedAt = Timestamp.string(Date())
        for c in subscribers.values { c.yield(state) }
    }

    /// The current state first, then every change, until the page goes away.
    func subscribe() -> AsyncStream<ScreenState> {
        let id = UUID()
        let (stream, continuation) = AsyncStream<ScreenState>.makeStream(bufferingPolicy: .bufferingNewest(8))
        continuation.yield(state)
        subscribers[id] = continuation
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        return stream
    }

    private func unsubscribe(_ id: UUID) { subscribers[id] = nil }

    /// Sends the state again to every page (keeps connections honest: a closed one fails its write).
    func heartbeat() { for c in subscribers.values { c.yield(state) } }

    /// Ends every stream (shutdown).
    func finishAll() {
        for c in subscribers.values { c.finish() }
        subscribers = [:]
    }
    var subscriberCount: Int { subscribers.count }
}
