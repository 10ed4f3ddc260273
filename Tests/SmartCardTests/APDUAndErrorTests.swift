import Testing
@testable import SmartCard

@Suite struct APDUTests {
    @Test func encodesAllCases() {
        #expect(CommandAPDU(ins: 0xA4, p1: 4, p2: 0, data: [1, 2], le: 0).bytes == [0, 0xA4, 4, 0, 2, 1, 2, 0])
        #expect(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0).bytes == [0, 0xB0, 0x81, 0, 0])
        #expect(CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0, data: [9]).bytes == [0, 0xD6, 0x83, 0, 1, 9])
        #expect(CommandAPDU(ins: 0x70, p1: 0, p2: 0).bytes == [0, 0x70, 0, 0])
    }

    @Test func parsesWhatItEncodes() {
        for c in [CommandAPDU(ins: 0xA4, p1: 4, p2: 0, data: [1, 2], le: 0), CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0),
                  CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0, data: [9]), CommandAPDU(ins: 0x70, p1: 0, p2: 0)] {
            #expect(CommandAPDU(bytes: c.bytes) == c)
        }
        #expect(CommandAPDU(bytes: [0, 0xA4, 4]) == nil)
        #expect(CommandAPDU(bytes: [0, 0xD6, 0x83, 0, 3, 1]) == nil)
        #expect(ResponseAPDU(bytes: [0x90]) == nil)
        #expect(ResponseAPDU(bytes: [1, 2, 0x90, 0x00]) == ResponseAPDU(data: [1, 2], status: .success))
    }

    @Test func hex() {
        #expect([UInt8](hex: "0a FF 10") == [0x0A, 0xFF, 0x10])
        #expect([UInt8](hex: "0G") == nil)
        #expect([UInt8](hex: "123") == nil)
        #expect([UInt8](arrayLiteral: 0xDE, 0xAD).hexString == "DEAD")
    }
}

/// A raw channel that plays back scripted answers and records what was sent.
final class ScriptedChannel: RawCardChannel {
    var answers: [[UInt8]]
    var sent: [[UInt8]] = []
    init(_ answers: [[UInt8]]) { self.answers = answers }
    func transmitRaw(_ command: [UInt8]) throws -> [UInt8] {
        sent.append(command)
        return answers.isEmpty ? [0x6F, 0x00] : answers.removeFirst()
    }
}

@Suite struct TransportRulesTests {
    @Test func getResponseIsRepeatedAndConcatenated() throws {
        let ch = ScriptedChannel([[0x61, 0x03], [1, 2, 3, 0x61, 0x02], [4, 5, 0x90, 0x00]])
        let r = try TransportRules.exchange(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0), over: ch)
        #expect(r == ResponseAPDU(data: [1, 2, 3, 4, 5], status: .success))
        #expect(ch.sent[1] == [0x00, 0xC0, 0x00, 0x00, 0x03])
        #expect(ch.sent[2] == [0x00, 0xC0, 0x00, 0x00, 0x02])
    }

    @Test func wrongLeIsRetriedWithTheCardsLength() throws {
        let ch = ScriptedChannel([[0x6C, 0x10], [UInt8](repeating: 7, count: 16) + [0x90, 0x00]])
        let r = try TransportRules.exchange(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0), over: ch)
        #expect(r.data.count == 16 && r.status == .success)
        #expect(ch.sent[1] == [0x00, 0xB0, 0x81, 0x00, 0x10])
    }

    @Test func boundedAgainstEndlessChaining() {
        let ch = ScriptedChannel(Array(repeating: [0x61, 0x01], count: 100))
        #expect(throws: TransportError.tooManyChainedResponses) {
            try TransportRules.exchange(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0), over: ch)
        }
        let short = ScriptedChannel([[0x90]])
        #expect(throws: TransportError.malformedResponse([0x90])) {
            try TransportRules.exchange(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0), over: short)
        }
    }
}

@Suite struct PCSCErrorTests {
    @Test func everyDocumentedCodeMapsToItsOwnCaseAndBack() {
        #expect(PCSCError.table.count == 59)
        for (code, error) in PCSCError.table {
            #expect(PCSCError(returnValue: Int(code)) == error)
            #expect(error.code == code)
            #expect(error.description.contains(String(code, radix: 16, uppercase: true)))
            #expect(error.name.hasPrefix("SCARD_"), "\(code)")
        }
        #expect(Set(PCSCError.table.values).count == PCSCError.table.count)
    }

    @Test func successAndUnknown() {
        #expect(PCSCError(returnValue: 0) == nil)
        #expect(PCSCError(returnValue: 0x8010_0099) == .other(code: 0x8010_0099))
        // LONG is 64-bit: a sign-extended value still maps.
        #expect(PCSCError(returnValue: Int(Int32(bitPattern: 0x8010_0069))) == .removedCard)
    }

    @Test func classification() {
        #expect(PCSCError.removedCard.isCardGone && PCSCError.resetCard.isCardGone && !PCSCError.timeout.isCardGone)
        #expect(PCSCError.readerUnavailable.isReaderGone && PCSCError.unknownReader.isReaderGone)
        #expect(PCSCError.noService.isServiceGone && PCSCError.serviceStopped.isServiceGone && !PCSCError.cancelled.isServiceGone)
    }

    @Test func multiStringSplit() {
        let raw: [CChar] = Array("A B\0C\0\0".utf8).map { CChar(bitPattern: $0) }
        #expect(PCSCContext.splitMultiString(raw) == ["A B", "C"])
        #expect(PCSCContext.splitMultiString([0]) == [])
    }
}
