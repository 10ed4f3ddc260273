import Crypto
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard
@testable import BenefitCard

/// Every case of `write-vectors.json`, replayed APDU by APDU against the emulator in process:
/// each answer and status word exactly, and EF.USAGE afterwards.
@Suite struct WriteVectorTests {
    static let names = Vectors.writeVectors.cases.map(\.name)

    @Test func thereAreAllTheCases() {
        #expect(Self.names.count == 35 && Set(Self.names).count == 35)
    }

    @Test(arguments: names)
    func replay(_ name: String) throws {
        let c = try #require(Vectors.writeVectors.cases.first { $0.name == name })
        let emulator = try Fx.emulator(c.card_number, usage: c.stored_usage)
        #expect(emulator.usageObject?.hexString == c.stored_usage)
        let channel = EmulatedChannel(emulator)
        for (i, step) in c.steps.enumerated() {
            if step.command == "GET CHALLENGE" { emulator.setFixedChallenge(try Fx.hex(step.response)) }
            let answer = try #require(ResponseAPDU(bytes: try channel.transmitRaw(try Fx.hex(step.apdu))))
            #expect(answer.status.description == step.sw, "\(name) step \(i + 1) \(step.command)")
            if step.command == "SELECT" {
                // The vectors leave the FCI out: a v2 FCI of the medical application.
                #expect(throws: Never.self) { try CardSession.checkFCI(answer.data, for: .medical) }
            } else {
                #expect(answer.data.hexString == step.response ?? "", "\(name) step \(i + 1) \(step.command)")
            }
        }
        #expect(emulator.usageObject?.hexString == c.usage_after, "\(name) usage after")
        // The file keeps its size, the object padded with 00 (§5.3).
        let file = try #require(emulator.file(3))
        #expect(file.count == CardEmulator.usageFileSize && file.dropFirst(c.usage_after.count / 2).allSatisfy { $0 == 0 })
    }

    /// The same write, by the terminal's own code: certificate, challenge, record, acknowledgement.
    @Test func theWriteThroughTheSession() throws {
        let w = Vectors.writeVectors.write
        let emulator = Vectors.emulator(w.card_number)
        emulator.setFixedChallenge(try Fx.hex(w.challenge))
        let session = CardSession(channel: EmulatedChannel(emulator))
        let readout = try session.read()
        let cert = try DeviceCertificate(bytes: Fx.hex(w.certificate))
        try session.verifyCertificate(cert)
        let challenge = try session.getChallenge()
        #expect(challenge.hexString == w.challenge)
        let usage = try #require(readout.usage)
        let next = try usage.next(period: "2026", setting: [("HM-SUBSIDY", usage.used(program: "HM-SUBSIDY", period: "2026") + 18000)])
        let object = try UsageRecord.encode(cardNumber: w.card_number, period: "2026", sequence: next.sequence, terminalID: cert.deviceID,
                                            writtenAt: Fx.date(w.now), entries: next.entries, challenge: challenge,
                                            signer: Vectors.device(w.device_id).private)
        #expect(object.hexString == w.usage_object)
        let ack = try session.writeUsage(object, cardNumber: w.card_number, sequence: next.sequence, challenge: challenge,
                                         cardPublicKey: readout.holder.cardPublicKey)
        #expect(ack.hexString == w.ack)
        #expect(CardSession.ackMessage(cardNumber: w.card_number, sequence: 4, challenge: challenge).hexString == w.ack_message)
        #expect(emulator.usageObject == object)
        // Read again in a new session: the card shows the new record and authenticates over it.
        let again = CardSession(channel: EmulatedChannel(emulator))
        let r2 = try again.read()
        #expect(r2.usage?.object == object)
        var c = FixedChallenge()
        #expect(try again.authenticate(r2, trust: Vectors.trust, challenges: &c) == .authentic)
    }
}
