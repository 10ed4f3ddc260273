import Foundation

/// A script of raw command APDUs, played over any channel: what someone with a USB
/// reader and a terminal program can send to a card. One command a line, in hex (spaces
/// allowed), optionally followed by `->` and the status word expected; `#` starts a comment.
///
///     # write without a certificate
///     00 A4 04 00 08 F14855494D494E01 00   -> 90 00
///     00 84 00 00 10                       -> 9000
///     00 D6 83 00 A4 7281A1…00             -> 6982
public struct APDUScript: Sendable, Equatable {
    /// One command of the script and the status word expected of it.
    public struct Step: Sendable, Equatable {
        /// 1-based line in the script text (0 for steps built in code).
        public var line: Int
        /// The command's bytes as written (at least 4).
        public var command: [UInt8]
        /// The status word after `->`; nil when the line expects none.
        public var expected: StatusWord?
        /// A step built in code (line 0 unless given).
        public init(line: Int = 0, command: [UInt8], expected: StatusWord? = nil) {
            self.line = line; self.command = command; self.expected = expected
        }
    }

    /// What the card answered to one step.
    public struct Outcome: Sendable, Equatable, CustomStringConvertible {
        /// The step sent.
        public var step: Step
        /// The card's answer.
        public var response: ResponseAPDU
        /// True when no status word was expected or the card answered the expected one.
        public var matches: Bool { step.expected.map { $0 == response.status } ?? true }
        /// `line N: command -> answer`, with the expected status when it did not match.
        public var description: String {
            "line \(step.line): \(step.command.hexString) -> \(response)" + (matches ? "" : " (expected \(step.expected!))")
        }
    }

    /// The commands in the order they are sent.
    public var steps: [Step]

    /// A script of steps built in code.
    public init(steps: [Step]) { self.steps = steps }

    /// Parses a script; a line that is not hex or whose expected status is not 4 hex digits throws.
    public init(_ text: String) throws {
        var steps: [Step] = []
        for (i, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let parts = line.components(separatedBy: "->")
            guard parts.count <= 2 else { throw APDUScriptError.badLine(i + 1, "more than one ->") }
            let commandText = parts[0].trimmingCharacters(in: .whitespaces)
            if commandText.isEmpty {
                guard parts.count == 1 else { throw APDUScriptError.badLine(i + 1, "an expected status without a command") }
                continue
            }
            guard let command = [UInt8](hex: commandText) else { throw APDUScriptError.badLine(i + 1, "command is not hex") }
            guard command.count >= 4 else { throw APDUScriptError.badLine(i + 1, "a command has at least 4 bytes") }
            var expected: StatusWord?
            if parts.count == 2 {
                guard let sw = [UInt8](hex: parts[1].trimmingCharacters(in: .whitespaces)), sw.count == 2 else {
                    throw APDUScriptError.badLine(i + 1, "expected status is not 2 hex bytes")
                }
                expected = StatusWord(sw[0], sw[1])
            }
            steps.append(Step(line: i + 1, command: command, expected: expected))
        }
        self.steps = steps
    }

    /// Sends every command as it is, with no transport rules (the card's own `61 XX` and
    /// `6C XX` come back as answers). A channel error (card pulled) is thrown.
    public func run(raw channel: RawCardChannel, stopAtMismatch: Bool = false) throws -> [Outcome] {
        try play(stopAtMismatch) { step in
            let bytes = try channel.transmitRaw(step.command)
            guard let r = ResponseAPDU(bytes: bytes) else { throw TransportError.malformedResponse(bytes) }
            return r
        }
    }

    /// Sends every command through `channel.transmit`, so the transport rules of card spec §1
    /// apply. Each command must be a well-formed short APDU.
    public func run(over channel: CardChannel, stopAtMismatch: Bool = false) throws -> [Outcome] {
        try play(stopAtMismatch) { step in
            guard let c = CommandAPDU(bytes: step.command) else { throw APDUScriptError.notAShortAPDU(line: step.line) }
            return try channel.transmit(c)
        }
    }

    /// Runs raw and throws at the first answer that is not the expected status word.
    @discardableResult
    public func check(raw channel: RawCardChannel) throws -> [Outcome] {
        let outcomes = try run(raw: channel, stopAtMismatch: true)
        if let bad = outcomes.last, !bad.matches, let want = bad.step.expected {
            throw APDUScriptError.unexpectedStatus(line: bad.step.line, expected: want, got: bad.response.status)
        }
        return outcomes
    }

    private func play(_ stopAtMismatch: Bool, _ send: (Step) throws -> ResponseAPDU) throws -> [Outcome] {
        var out: [Outcome] = []
        for step in steps {
            let o = Outcome(step: step, response: try send(step))
            out.append(o)
            if stopAtMismatch && !o.matches { break }
        }
        return out
    }
}

/// Why a script could not be parsed or played.
public enum APDUScriptError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The 1-based line is not a command as the script format has it, and why.
    case badLine(Int, String)
    /// Played through the transport rules, the line's command is not a well-formed short APDU.
    case notAShortAPDU(line: Int)
    /// The card answered another status word than the line expects (`check`).
    case unexpectedStatus(line: Int, expected: StatusWord, got: StatusWord)

    /// The error as one line naming the script line.
    public var description: String {
        switch self {
        case .badLine(let n, let why): return "APDU script line \(n): \(why)"
        case .notAShortAPDU(let n): return "APDU script line \(n): not a well-formed short APDU"
        case .unexpectedStatus(let n, let want, let got): return "APDU script line \(n): the card answered \(got), expected \(want)"
        }
    }
}
