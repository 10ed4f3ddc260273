import Crypto
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard
@testable import BenefitCard

/// The write sequence through `CardSession` against the emulator's refusals and faults.
@Suite struct WriteTests {
    struct Setup {
        var session: CardSession
        var emulator: CardEmulator
        var readout: CardReadout
        var key: [UInt8] { readout.holder.cardPublicKey }
    }

    func setup(_ number: String = Fx.card17, _ m: Misbehaviour = Misbehaviour()) throws -> Setup {
        let e = Vectors.emulator(number, m)
        let s = CardSession(channel: EmulatedChannel(e))
        let r = try s.read()
        return Setup(session: s, emulator: e, readout: r)
    }

    /// Certificate, challenge, record of sequence `seq`; the write itself.
    func write(_ t: Setup, _ seq: UInt32 = 4, used: Int64 = 30000) throws -> [UInt8] {
        try t.session.verifyCertificate(Fx.certificate())
        let ch = try t.session.getChallenge()
        let object = try Fx.record(seq, used: used, challenge: ch)
        return try t.session.writeUsage(object, cardNumber: Fx.card17, sequence: seq, challenge: ch, cardPublicKey: t.key)
    }

    @Test func aGoodWriteReturnsTheVerifiedAck() throws {
        let t = try setup()
        let ack = try write(t)
        let u = try UsageRecord(fileBytes: try #require(t.emulator.file(3)))
        let key = try Curve25519.Signing.PublicKey(rawRepresentation: t.key)
        #expect(key.isValidSignature(ack, for: CardSession.ackMessage(cardNumber: Fx.card17, sequence: 4, challenge: try #require(u.body).challenge)))
        #expect(u.sequence == 4 && u.used(program: "HM-SUBSIDY", period: "2026") == 30000)
        // The challenge is fresh on every GET CHALLENGE (random, 16 bytes).
        let a = try t.session.getChallenge(), b = try t.session.getChallenge()
        #expect(a.count == 16 && a != b)
    }

    @Test func refusalsAreTypedWithCommandAndStatus() throws {
        // Sequence replayed and skipped: 69 85 by UPDATE BINARY, nothing written.
        for seq: UInt32 in [3, 5] {
            let t = try setup()
            let before = t.emulator.file(3)
            #expect(throws: CardError.writeRefused(.updateBinary, StatusWord(0x6985))) { try write(t, seq) }
            #expect(t.emulator.file(3) == before)
        }
        // A lower figure, even by a certified device: 69 85.
        let lower = try setup()
        #expect(throws: CardError.writeRefused(.updateBinary, StatusWord(0x6985))) { try write(lower, 4, used: 11999) }

        let pso = try setup(Fx.card17, Misbehaviour(refuseCertificate: StatusWord(0x6982)))
        #expect(throws: CardError.writeRefused(.verifyCertificate, StatusWord(0x6982))) { try pso.session.verifyCertificate(Fx.certificate()) }
        let challenge = try setup(Fx.card17, Misbehaviour(refuseChallenge: StatusWord(0x6985)))
        try challenge.session.verifyCertificate(Fx.certificate())
        #expect(throws: CardError.writeRefused(.getChallenge, StatusWord(0x6985))) { try challenge.session.getChallenge() }
        for sw: UInt16 in [0x6982, 0x6985, 0x6A80, 0x6581, 0x6F00] {
            let t = try setup(Fx.card17, Misbehaviour(forceWriteStatus: StatusWord(sw)))
            let before = t.emulator.file(3)
            #expect(throws: CardError.writeRefused(.updateBinary, StatusWord(sw))) { try write(t) }
            #expect(t.emulator.file(3) == before)
        }
        let memory = try setup(Fx.card17, Misbehaviour(refuseWrites: true))
        #expect(throws: CardError.writeRefused(.updateBinary, .memoryFailure)) { try write(memory) }
        // An expired certificate (before the card's last write) is refused by PSO itself.
        let t = try setup()
        let ca = Vectors.deviceCA
        let old = try DeviceCertificate.issue(caKeyID: ca.id, caKey: ca.private, deviceID: "KSK-TEST-0001",
                                              devicePublicKey: Array(Vectors.device("KSK-TEST-0001").public.rawRepresentation),
                                              validFrom: Fx.cardDate("20260101"), validThrough: Fx.cardDate("20261007"))
        #expect(throws: CardError.writeRefused(.verifyCertificate, StatusWord(0x6982))) { try t.session.verifyCertificate(old) }
    }

    @Test func refusalDescriptionsNameCommandStatusAndMeaning() {
        let cases: [(WriteCommand, UInt16, String)] = [
            (.verifyCertificate, 0x6982, "certificate"), (.getChallenge, 0x6985, "challenge"),
            (.updateBinary, 0x6982, "DF46"), (.updateBinary, 0x6985, "sequence"), (.updateBinary, 0x6A80, "malformed"),
        ]
        for (command, sw, word) in cases {
            let text = CardError.writeRefused(command, StatusWord(sw)).description
            #expect(text.contains(command.rawValue) && text.contains(String(format: "%02X %02X", sw >> 8, sw & 0xFF)) && text.contains(word), "\(text)")
        }
        #expect(CardError.writeRefused(.updateBinary, StatusWord(0x6985)).description.contains("lower"))
        #expect(CardError.writeUnacknowledged("x").description.contains("torn"))
    }

    @Test(arguments: Misbehaviour.AckFault.allCases)
    func ninetyZeroZeroWithoutAValidAckIsUnacknowledged(_ fault: Misbehaviour.AckFault) throws {
        for applies in [true, false] {
            let t = try setup(Fx.card17, Misbehaviour(ackFault: fault, ackFaultApplies: applies))
            let before = try #require(t.emulator.usageObject)
            do { _ = try write(t); Issue.record("a bad ack was accepted") } catch let e as CardError {
                guard case .writeUnacknowledged = e else { Issue.record("\(e)"); continue }
            }
            let after = try UsageRecord(fileBytes: try #require(t.emulator.file(3)))
            #expect(applies ? after.sequence == 4 : after.object == before)
        }
    }

    @Test func anAckFromAnotherKeyIsUnacknowledged() throws {
        // A clone signs the ack with its own key: it does not verify with DF29.
        let t = try setup(Fx.card17, Misbehaviour(wrongCardKey: true))
        do { _ = try write(t); Issue.record("a clone's ack was accepted") } catch let e as CardError {
            guard case .writeUnacknowledged = e else { Issue.record("\(e)"); return }
        }
        // And an ack checked against the wrong sequence/challenge: the session refuses to send at all.
        let u = try setup()
        try u.session.verifyCertificate(Fx.certificate())
        let ch = try u.session.getChallenge()
        let object = try Fx.record(4, challenge: ch)
        let count = u.emulator.commandCount
        #expect(throws: CardError.self) { try u.session.writeUsage(object, cardNumber: Fx.card17, sequence: 5, challenge: ch, cardPublicKey: u.key) }
        #expect(throws: CardError.self) { try u.session.writeUsage(object, cardNumber: Fx.card17, sequence: 4, challenge: Array(ch.reversed()), cardPublicKey: u.key) }
        #expect(u.emulator.commandCount == count)
        #expect(try u.session.writeUsage(object, cardNumber: Fx.card17, cardPublicKey: u.key).count == 64)
    }

    @Test func pulledBeforeTheWriteKeepsTheOldRecord() throws {
        let t = try setup(Fx.card17, Misbehaviour(pullBeforeWrite: true))
        let before = t.emulator.file(3)
        #expect(throws: CardError.cardRemoved) { try write(t) }
        #expect(t.emulator.file(3) == before)
    }

    @Test func pulledAfterTheWriteHoldsTheNewRecord() throws {
        let t = try setup(Fx.card17, Misbehaviour(pullAfterWrite: true))
        #expect(throws: CardError.cardRemoved) { try write(t) }
        #expect(try UsageRecord(fileBytes: try #require(t.emulator.file(3))).sequence == 4)
    }

    @Test func aNewCardTakesItsFirstRecord() throws {
        let t = try setup("3307820000000058")
        try t.session.verifyCertificate(Fx.certificate())
        let ch = try t.session.getChallenge()
        let object = try UsageRecord.encode(cardNumber: "3307820000000058", period: "2026", sequence: 1, terminalID: "KSK-TEST-0001",
                                            writtenAt: Fx.date(Fx.now), entries: [.init(program: "HM-SUBSIDY", usedFen: 60000),
                                                                                  .init(program: "HM-CS-OUTPATIENT", usedFen: 15000)],
                                            challenge: ch, signer: Vectors.device("KSK-TEST-0001").private)
        #expect(try t.session.writeUsage(object, cardNumber: "3307820000000058", sequence: 1, challenge: ch, cardPublicKey: t.key).count == 64)
        #expect(t.emulator.usageObject == object)
    }

    @Test func oversizedOrBadRecordsAreMisuseNotTraps() throws {
        let t = try setup()
        try t.session.verifyCertificate(Fx.certificate())
        let ch = try t.session.getChallenge()
        for object in [[UInt8](repeating: 0x72, count: 300), [0x72, 0x00], [0x72, 0x03, 0xDF, 0x41, 0x04]] {
            do { _ = try t.session.writeUsage(object, cardNumber: Fx.card17, sequence: 4, challenge: ch, cardPublicKey: t.key)
                Issue.record("sent a bad record")
            } catch let e as CardError {
                guard case .misuse = e else { Issue.record("\(e)"); continue }
            }
        }
    }

    @Test func legalAidCardHasNoUsageFile() throws {
        let e = Vectors.emulator("3307820000100025")
        let ch = EmulatedChannel(e)
        let s = CardSession(channel: ch)
        #expect(try s.select() == .legalAid)
        #expect(try s.readFile(sfi: 3) == nil)
        #expect(throws: CardError.self) { try s.getChallenge() }
        // A raw write to it is refused by the card: it has no EF.USAGE.
        let object = try Fx.record(1, challenge: Array(repeating: 0, count: 16))
        #expect(try ch.transmit(CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0, data: object, le: 0)).status == .fileNotFound)
        // Nor does it accept a certificate: it holds no CA key.
        #expect(try ch.transmit(CommandAPDU(ins: 0x2A, p1: 0, p2: 0xBE, data: Vectors.certificate("KSK-TEST-0001").bytes)).status == StatusWord(0x6982))
    }

    @Test func commandsBeforeSelectAreRefusedByTheCard() throws {
        let ch = EmulatedChannel(Vectors.emulator(Fx.card17))
        #expect(try ch.transmit(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0)).status == .conditionsNotSatisfied)
        #expect(try ch.transmit(CommandAPDU(ins: 0x84, p1: 0, p2: 0, le: 0x10)).status == .conditionsNotSatisfied)
        #expect(try ch.transmit(CommandAPDU(cla: 0x80, ins: 0xB0, p1: 0x81, p2: 0, le: 0)).status == .claNotSupported)
        #expect(try ch.transmit(CommandAPDU(ins: 0x12, p1: 0, p2: 0)).status == .insNotSupported)
    }

    @Test func aNewSelectOrResetDropsTheSessionState() throws {
        let e = Vectors.emulator(Fx.card17)
        let ch = EmulatedChannel(e)
        let s = CardSession(channel: ch)
        let r = try s.read()
        try s.verifyCertificate(Fx.certificate())
        let challenge = try s.getChallenge()
        _ = try s.select()   // a new SELECT: a new application session
        let object = try Fx.record(4, challenge: challenge)
        #expect(throws: CardError.writeRefused(.updateBinary, StatusWord(0x6982))) {
            try s.writeUsage(object, cardNumber: Fx.card17, sequence: 4, challenge: challenge, cardPublicKey: r.holder.cardPublicKey)
        }
        // Without Le the card cannot answer its acknowledgement: wrong length, and the challenge is used up.
        try s.verifyCertificate(Fx.certificate())
        let c2 = try s.getChallenge()
        let o2 = try Fx.record(4, challenge: c2)
        #expect(try ch.transmit(CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0, data: o2)).status == .wrongLength)
        #expect(try ch.transmit(CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0, data: o2, le: 0)).status == StatusWord(0x6982))
    }

    @Test func writesThroughTransportRules() throws {
        for m in [Misbehaviour(getResponseChunk: 7), Misbehaviour(getResponseChunk: 16, wrongLe: true)] {
            let t = try setup(Fx.card17, m)
            #expect(try write(t).count == 64)
        }
    }
}
