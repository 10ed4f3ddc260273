import TestVectors
import Testing
import VirtualCard
@testable import SmartCard

@Suite struct APDUScriptTests {
    static let text = """
        # select the medical application
        00 A4 04 00 08 F14855494D494E01 00   -> 90 00
        00B0810000                           -> 9000   # EF.HOLDER

        00 B0 85 00 00                       -> 6A82
        00B0830000
        """

    @Test func parsesCommandsExpectationsAndComments() throws {
        let s = try APDUScript(Self.text)
        #expect(s.steps.map(\.line) == [2, 3, 5, 6])
        #expect(s.steps[0].command == [0x00, 0xA4, 0x04, 0x00, 0x08, 0xF1, 0x48, 0x55, 0x49, 0x4D, 0x49, 0x4E, 0x01, 0x00])
        #expect(s.steps.map(\.expected) == [.success, .success, .fileNotFound, nil])
    }

    @Test(arguments: ["00 A4 0", "00A4 -> 9000 -> 9000", "00A40400 -> 90", "0G A4 04 00", "-> 9000", "00A4 -> 9000"])
    func badLinesThrow(_ line: String) {
        #expect(throws: APDUScriptError.self) { try APDUScript(line) }
    }

    @Test func runsRawAndReportsEveryAnswer() throws {
        let ch = ScriptedChannel([[0x90, 0x00], [1, 2, 0x90, 0x00], [0x6A, 0x82], [0x61, 0x02]])
        let out = try APDUScript(Self.text).run(raw: ch)
        #expect(out.count == 4 && out.allSatisfy { $0.matches })
        #expect(out[1].response == ResponseAPDU(data: [1, 2], status: .success))
        #expect(out[3].response.status == StatusWord(0x6102))   // raw: no GET RESPONSE
        #expect(ch.sent.count == 4)
    }

    @Test func checkStopsAtTheFirstUnexpectedStatus() throws {
        let ch = ScriptedChannel([[0x90, 0x00], [0x69, 0x82], [0x6A, 0x82]])
        #expect(throws: APDUScriptError.unexpectedStatus(line: 3, expected: .success, got: StatusWord(0x6982))) {
            try APDUScript(Self.text).check(raw: ch)
        }
        #expect(ch.sent.count == 2)
        let mismatch = try APDUScript(Self.text).run(raw: ScriptedChannel([[0x90, 0x00], [0x69, 0x82]]), stopAtMismatch: true)
        #expect(mismatch.count == 2 && !mismatch[1].matches)
    }

    @Test func overACardChannelTheTransportRulesApply() throws {
        let emulator = Vectors.emulator("3307820000000017", Misbehaviour(getResponseChunk: 9))
        let out = try APDUScript(Self.text).run(over: EmulatedChannel(emulator))
        #expect(out.allSatisfy { $0.matches }, "\(out)")
        #expect(out[1].response.data == [UInt8](hex: Vectors.description("3307820000000017").files.holder))
    }

    @Test func malformedCommandOverACardChannelThrows() throws {
        #expect(throws: APDUScriptError.notAShortAPDU(line: 1)) {
            try APDUScript("00 D6 83 00 05 01").run(over: EmulatedChannel(Vectors.emulator("3307820000000017")))
        }
    }
}
