import KioskProtocol
import Foundation
import KioskStore

/// What the kiosk screen shows, published to the browser over SSE as JSON.
public struct ScreenState: Codable, Sendable, Equatable {
    /// The hospital bill waiting for a card, as the screen shows it.
    public struct Bill: Codable, Sendable, Equatable {
        /// The hospital's reference for the bill.
        public var billReference: String
        /// The bill's amount, in fen.
        public var billFen: Int64
        enum CodingKeys: String, CodingKey { case billReference = "bill_reference", billFen = "bill_fen" }
    }
    /// One of the person's programs and where they stand in it.
    public struct ProgramLine: Codable, Sendable, Equatable {
        /// The program's code.
        public var code: String
        /// The program's name, as the screen shows it.
        public var name: String
        /// Medical: the allowance left this period, in fen; nil for legal aid.
        public var remainingFen: Int64?
        /// Medical: the allowance per period, in fen.
        public var limitFen: Int64?
        /// Used this year (medical): what the card and the snapshot say was used (issue 10).
        public var usedFen: Int64?
        /// Legal aid: the matters the program covers, each a `code` and a `name`.
        public var matters: [[String: String]]?
        enum CodingKeys: String, CodingKey { case code, name, remainingFen = "remaining_fen", limitFen = "limit_fen", usedFen = "used_fen", matters }
    }
    /// The outcome of a card session or an action (or a pre-settlement), as the screen shows it.
    public struct Result: Codable, Sendable, Equatable {
        /// check, charge, legal_aid
        public var action: String
        /// What happened: `eligible`, `granted`, `confirm`, `applied`, or a refusal's or failure's code.
        public var code: String
        /// The code's words, as `Guidance.text` gives them.
        public var message: String
        /// A refusal's reason in words; empty for an operating failure.
        public var detail: String
        /// The card number, masked.
        public var cardNumber: String?
        /// The card holder's name, masked.
        public var holder: String?
        /// Which card was read: `medical` or `legal_aid`.
        public var cardType: String?
        /// The person's programs and the allowance left in each.
        public var programs: [ProgramLine] = []
        /// The hospital bill's amount, in fen.
        public var billFen: Int64?
        /// What the subsidy covers, in fen.
        public var subsidyFen: Int64?
        /// The amount the patient pays, in fen.
        public var patientPaysFen: Int64?
        /// The ids of the records this session wrote (subsidies or the application).
        public var records: [String] = []
        /// The legal-aid matter applied for (its code).
        public var matter: String?
        /// printed, not printed, already printed: never a path (the technician's detail is in the log).
        public var receipt: String?
        /// What to say and do next (`Guidance`): the screen's words and the voice prompt.
        public var headline = ""
        /// What to do next, in words.
        public var next = ""
        /// The voice prompt: ids of `VoicePrompts.catalogue`, played in order.
        public var voice: [String] = []
        /// A resident may print a status slip of this result (township, card on the reader).
        public var slip = false
        /// The application just filed can still be withdrawn here (`cancel_seconds` after filing).
        public var cancellable = false
        /// The card was taken out: what identifies or concerns the person has been removed.
        public var redacted = false
        /// Rises with every voice prompt to play (the page plays each number's prompt once).
        public var number: UInt64 = 0
        /// Issue 20: the card is still on the reader after the outcome: 请取走卡片.
        public var takeCard = false
        /// The pre-settlement's bill (phase `confirm`): 确认 and 取消 post for it.
        public var billReference: String?
        /// Seconds the pre-settlement waits for 确认.
        public var confirmSeconds: Int?
        /// The pre-settlement's number: 确认 and 取消 name it, so a press meant for earlier
        /// figures is refused.
        public var confirmation: UInt64?
        /// The figures changed since the patient last saw them: shown again, nothing written.
        public var figuresChanged = false
        /// This tap ended the hospital bill (granted or refused).
        public var billEnded = false
        enum CodingKeys: String, CodingKey {
            case action, code, message, detail, cardNumber = "card_number", holder, cardType = "card_type", programs
            case billFen = "bill_fen", subsidyFen = "subsidy_fen", patientPaysFen = "patient_pays_fen", records, matter, receipt
            case headline, next, voice, slip, cancellable, redacted, number, takeCard = "take_card", billReference = "bill_reference"
            case confirmSeconds = "confirm_seconds", confirmation, figuresChanged = "figures_changed", billEnded = "bill_ended"
        }

        /// Issue 10/20 (privacy in a queue): the card is out, so the masked name, card number
        /// and allowance leave; what the patient must pay, and what to do next, stay a moment.
        /// A kiosk without a printer (`printsSlips` false) promises no slip.
        public mutating func redact(printsSlips: Bool = true) {
            holder = nil; cardNumber = nil; programs = []; subsidyFen = nil
            detail = ""; records = []; slip = false; cancellable = false; redacted = true; voice = []; takeCard = false
            if code == "granted" { next = printsSlips ? "请取走凭条。" : "" }
        }

        /// Results after which the card is still needed: a township card's status (the
        /// resident may choose a legal-aid matter or print a status slip next).
        public func keepsCard(profile: DeviceConfig.Profile) -> Bool {
            profile == .township && action == "check" && code == "eligible"
        }
    }

    /// idle, reading, confirm (a pre-settlement waiting for 确认), result
    public var phase: String = "idle"
    /// A bill waits while a card rests on the reader from before it: lift and tap again.
    public var liftCard = false
    /// Rises by one with every change, in the order the changes were made (one ordered
    /// stream): a page never shows a state older than one it has shown.
    public var seq: UInt64 = 0
    /// Which kind of kiosk this is: `hospital` or `township`.
    public var profile: String
    /// The institution's display name (provisioning's `--display-name`), never its code.
    public var institution: String
    /// The device's id (`device_id`).
    public var deviceID: String
    /// The PC/SC name of the reader the last card was put on.
    public var reader: String?
    /// A card is on the reader now.
    public var cardPresent = false
    /// Hospital: the bill waiting for a card; nil when none is open.
    public var bill: Bill?
    /// The result or pre-settlement on the screen; nil when none.
    public var result: Result?
    /// A notice across the screen (the card service lost); nil when none.
    public var notice: String?
    /// When the state last changed (`YYYY-MM-DDTHH:MM:SSZ`).
    public var updatedAt: String = Timestamp.string(Date())
    /// Where people are sent for help, voice on/off and its volume (`ScreenSettings`).
    public var helpDesk = ""
    /// The help counter's phone (provisioning), shown beside the counter in the footer.
    public var helpPhone: String?
    /// Whether the page plays the voice prompts.
    public var voiceOn = true
    /// The voice prompts' volume in percent, 0–100.
    public var volume = 80

    /// A screen at rest for this device: idle, no card, no bill, no result.
    public init(profile: String, institution: String, deviceID: String, helpDesk: String = "", helpPhone: String? = nil,
                voiceOn: Bool = true, volume: Int = 80) {
        self.profile = profile; self.institution = institution; self.deviceID = deviceID; self.helpDesk = helpDesk
        self.helpPhone = helpPhone; self.voiceOn = voiceOn; self.volume = volume
    }

    enum CodingKeys: String, CodingKey {
        case phase, seq, profile, institution, deviceID = "device_id", reader, cardPresent = "card_present", bill, result, notice
        case updatedAt = "updated_at", helpDesk = "help_desk", voiceOn = "voice_on", volume, helpPhone = "help_phone", liftCard = "lift_card"
    }

    /// The state as JSON with sorted keys, as `/api/state` and the screen stream send it.
    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The state as a JavaScript literal safe inside an HTML `<script>` element: besides JSON's
    /// own escaping, `<`, `>`, `&`, U+2028 and U+2029 are written as `\u003c` and the like, so
    /// no string (a bill reference `<!--<script>`, `</script>`) can end or re-mode the element.
    public var inlineScriptLiteral: String { Self.scriptSafe(json) }

    /// `json` with `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c` and the like (see `inlineScriptLiteral`).
    public static func scriptSafe(_ json: String) -> String {
        var out = String.UnicodeScalarView()
        for c in json.unicodeScalars {
            switch c {
            case "<": out.append(contentsOf: #"\u003c"#.unicodeScalars)
            case ">": out.append(contentsOf: #"\u003e"#.unicodeScalars)
            case "&": out.append(contentsOf: #"\u0026"#.unicodeScalars)
            case "\u{2028}": out.append(contentsOf: #"\u2028"#.unicodeScalars)
            case "\u{2029}": out.append(contentsOf: #"\u2029"#.unicodeScalars)
            default: out.append(c)
            }
        }
        return String(out)
    }
}

/// One change to the screen.
public typealias ScreenChange = @Sendable (inout ScreenState) -> Void

/// The one ordered stream of screen changes (issue 8 item 7): whoever changes the screen
/// (card sessions on their queue, the reader service, HTTP) yields here, synchronously and in
/// the order the changes are made; one task (`ScreenService`) applies them to the hub in
/// that order. No change travels in a Task of its own, so "reading" can never overtake the
/// "result" that followed it.
public struct ScreenFeed: Sendable {
    /// The changes, in the order they were published.
    public let changes: AsyncStream<ScreenChange>
    private let continuation: AsyncStream<ScreenChange>.Continuation

    /// A feed with no change yet.
    public init() { (changes, continuation) = AsyncStream.makeStream(of: ScreenChange.self, bufferingPolicy: .unbounded) }

    /// Queues `change` after every change published before it.
    public func publish(_ change: @escaping ScreenChange) { continuation.yield(change) }
    /// Ends the stream (the daemon's shutdown).
    public func finish() { continuation.finish() }
}

/// The screen's state and its SSE subscribers: every change reaches every open page, in order.
public actor ScreenHub {
    /// At most this many screen streams at once; one more is refused (503), so open streams
    /// cannot use up the daemon's descriptors or its attention.
    public static let maximumStreams = 32

    /// What the screen shows now.
    public private(set) var state: ScreenState
    private var subscribers: [UInt64: AsyncStream<ScreenState>.Continuation] = [:]
    private var nextID: UInt64 = 0
    /// The stream kept for the screen's own session (issue 20 item 6): whoever else holds the
    /// other 31, the screen still gets its state.
    private var reservedID: UInt64?

    /// A hub showing `initial`, with no page subscribed yet.
    public init(_ initial: ScreenState) { state = initial }

    /// Applies `change`, numbers it (`seq`), stamps `updatedAt` and sends the new state to every page.
    public func update(_ change: ScreenChange) {
        change(&state)
        state.seq += 1
        state.updatedAt = Timestamp.string(Date())
        for c in subscribers.values { c.yield(state) }
    }

    /// The current state first, then every change, until the page goes away (the caller then
    /// calls `unsubscribe`); nil when the shared streams (`maximumStreams` less the screen's
    /// own) are all open. The screen's session always gets the reserved one: a newer stream of
    /// it replaces an older (the page reconnected).
    public func subscribe(session: Bool = false) -> (id: UInt64, states: AsyncStream<ScreenState>)? {
        if session {
            if let old = reservedID { subscribers.removeValue(forKey: old)?.finish() }
        } else {
            let shared = subscribers.count - (reservedID == nil ? 0 : 1)
            guard shared < Self.maximumStreams - 1 else { return nil }
        }
        nextID += 1
        if session { reservedID = nextID }
        let (stream, continuation) = AsyncStream<ScreenState>.makeStream(bufferingPolicy: .bufferingNewest(8))
        continuation.yield(state)
        subscribers[nextID] = continuation
        return (nextID, stream)
    }

    /// Ends stream `id` (its page went away); the screen's reserved stream is free again if it was that one.
    public func unsubscribe(_ id: UInt64) {
        subscribers.removeValue(forKey: id)?.finish()
        if reservedID == id { reservedID = nil }
    }

    /// Sends the state again to every page (keeps connections honest: a closed one fails its write).
    public func heartbeat() { for c in subscribers.values { c.yield(state) } }

    /// Ends every stream (shutdown).
    public func finishAll() {
        for c in subscribers.values { c.finish() }
        subscribers = [:]
        reservedID = nil
    }
    /// How many screen streams are open now (the health report's `screen_streams`).
    public var subscriberCount: Int { subscribers.count }
}
