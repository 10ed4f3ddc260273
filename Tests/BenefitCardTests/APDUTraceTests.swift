import Crypto
import Foundation
import KioskProtocol
@testable import SmartCard
import TestVectors
import Testing
import VirtualCard
@testable import BenefitCard

/// Issue 22 item 4: the masked APDU trace (`kioskctl card inspect --trace`, `kioskd --trace-apdu`).
@Suite struct APDUTraceTests {
    /// Reads and authenticates every vector card through a traced channel: the trace shows
    /// every command and status word, and none of the holder's number, name, identity
    /// number or a signature, in hex or in text.
    @Test(arguments: Vectors.cards.map(\.card_number))
    func theTraceMasksPersonalDataAndSignatures(_ number: String) throws {
        let v = try #require(Vectors.cards.first { $0.card_number == number })
        var lines: [String] = []
        var ticks: UInt64 = 0
        let traced = TracingChannel(EmulatedChannel(Vectors.emulator(number)), clock: { ticks += 1_500_000; return ticks }) { lines.append($0) }
        let session = CardSession(channel: traced)
        let readout = try session.read()
        var challenges = RecordingChallenges()
        #expect(try session.authenticate(readout, trust: Vectors.trust, challenges: &challenges) == .authentic)

        let trace = lines.joined(separator: "\n")
        #expect(lines.first?.hasPrefix("apdu > 00A40400 ") == true, "\(lines.first ?? "")")
        #expect(lines.contains { $0.hasSuffix("(INTERNAL AUTHENTICATE)") })
        #expect(lines.filter { $0.hasPrefix("apdu > ") }.count == lines.filter { $0.hasPrefix("apdu < ") }.count)
        #expect(lines.filter { $0.hasPrefix("apdu < ") }.allSatisfy { $0.hasSuffix("  1.5 ms") })
        #expect(trace.contains("<64 bytes masked>"), "no signature was masked")
        // The card number, whole, appears nowhere: neither as ASCII hex nor as text.
        #expect(!trace.contains(Hex.encode(Array(number.utf8), uppercase: true)))
        #expect(!trace.contains(number))
        #expect(trace.contains(Hex.encode(Array(number.prefix(4).utf8), uppercase: true) + String(repeating: "**", count: 8)))
        // The name, in UTF-8 hex.
        #expect(!trace.contains(Hex.encode(Array(v.name.utf8), uppercase: true)))
        // The card's signature over the challenge, and every 64-byte run of the real bytes.
        var unmasked: [String] = []
        let plain = TracingChannel(EmulatedChannel(Vectors.emulator(number)), masked: false) { unmasked.append($0) }
        _ = try CardSession(channel: plain).read()
        let full = unmasked.joined(separator: "\n")
        #expect(full.contains(Hex.encode(Array(number.utf8), uppercase: true)), "the unmasked trace holds the number")
        for line in unmasked where line.hasPrefix("apdu < ") {
            let hex = line.dropFirst(7).split(separator: " ").first.map(String.init) ?? ""
            var i = hex.startIndex
            while hex.distance(from: i, to: hex.endIndex) >= 128 {
                let window = String(hex[i..<hex.index(i, offsetBy: 128)])
                #expect(!trace.contains(window))
                i = hex.index(i, offsetBy: 2)
            }
        }
    }

    @Test("a failing exchange is traced with its error, and rethrown")
    func errorsAreTraced() throws {
        final class Broken: CardChannel {
            struct Gone: Error {}
            func transmit(_ command: CommandAPDU) throws -> ResponseAPDU { throw Gone() }
        }
        var lines: [String] = []
        let traced = TracingChannel(Broken()) { lines.append($0) }
        #expect(throws: Broken.Gone.self) { try traced.transmit(CommandAPDU(ins: 0x84, p1: 0, p2: 0, le: 16)) }
        #expect(lines.count == 2 && lines[1].hasPrefix("apdu ! "))
    }

    @Test("values are masked by what they are: digit runs keep 4 + 4, text and 64 bytes go whole")
    func maskRules() {
        #expect(APDUTrace.maskValue(Array("1234567".utf8)) == Hex.encode(Array("1234567".utf8), uppercase: true))
        #expect(APDUTrace.maskValue(Array("13800138000".utf8)) == "31333830" + String(repeating: "**", count: 3) + "38303030")
        #expect(APDUTrace.maskValue(Array("王秀英".utf8)) == "<9 bytes masked>")
        #expect(APDUTrace.maskValue([UInt8](repeating: 7, count: 64)) == "<64 bytes masked>")
        #expect(APDUTrace.maskValue([0x90, 0x00, 0xFF]) == "9000FF")          // not UTF-8: shown
        #expect(APDUTrace.mask([0x5F, 0x20, 0x03, 0x41, 0x42, 0x43]) == "5F20 03 414243")
    }
}
