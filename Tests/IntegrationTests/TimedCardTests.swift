import BenefitCard
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard

extension PCSCIntegrationTests {
    @Test("a card with a real card's timing (issue 24): the model's figures, and through pcscd each answer comes no sooner than the model says")
    func timedCard() throws {
        let fast = CardTiming.fast, slow = CardTiming.slow
        let select: [UInt8] = [0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x00, 0x00, 0x01, 0x56, 0x4B, 0x31]
        let ok: [UInt8] = [0x90, 0x00]
        // 12 + 2 bytes and T=1's 4 + 4 of framing at 115.2 kbit/s (11 etu each) + 1 ms; at 9,600 bit/s + 5 ms.
        #expect(abs(fast.seconds(command: select, response: ok) - (22 * 11 / 115_200 + 0.001)) < 1e-9)
        #expect(abs(slow.seconds(command: select, response: ok) - (22 * 11 / 9_600 + 0.005)) < 1e-9)
        let authenticate: [UInt8] = [0x00, 0x88, 0x00, 0x00, 0x10] + [UInt8](repeating: 0, count: 16) + [0x00]
        let signature = [UInt8](repeating: 0, count: 64) + ok
        #expect(fast.seconds(command: authenticate, response: signature) > 0.040)
        #expect(slow.seconds(command: authenticate, response: signature) > 0.250)
        #expect(fast.seconds(command: authenticate, response: [0x69, 0x82]) < 0.005, "a refusal costs no signature")

        let emulator = Vectors.emulator("3307820000000017")
        let ctx = try PCSCContext()
        let client = VPCDClient(emulator: emulator, port: Harness.port, timing: slow)
        try client.insert(timeout: 10)
        defer { client.remove(); _ = try? ctx.waitForCard(in: Harness.reader, present: false, timeout: 10) }
        #expect(try ctx.waitForCard(in: Harness.reader, present: true, timeout: 10))
        let connection = try ctx.connect(reader: Harness.reader)
        let start = DispatchTime.now().uptimeNanoseconds
        let answer = try connection.transmitRaw(CommandAPDU(ins: 0xA4, p1: 0x04, p2: 0x00, data: CardType.medical.aid, le: 0x00).bytes)
        let took = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        #expect(answer.suffix(2) == [0x90, 0x00])
        let sent = CommandAPDU(ins: 0xA4, p1: 0x04, p2: 0x00, data: CardType.medical.aid, le: 0x00).bytes
        #expect(took >= slow.seconds(command: sent, response: answer), "answered in \(took) s")
    }
}
