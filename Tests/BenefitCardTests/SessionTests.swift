import Crypto
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard
@testable import BenefitCard

/// The card application against the emulator in-process (no pcscd): fast and exact.
@Suite struct SessionTests {
    @Test(arguments: Vectors.cards.map(\.card_number))
    func everyVectorCardReadsAndAuthenticates(_ number: String) throws {
        let v = Vectors.cards.first { $0.card_number == number }!
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator(number)))
        let readout = try session.read()
        #expect(readout.type == (v.type == "medical" ? .medical : .legalAid))
        #expect(readout.holder.name == v.name)
        #expect((readout.usage != nil) == (v.type == "medical"))
        var challenges = RecordingChallenges()
        #expect(try session.authenticate(readout, trust: Vectors.trust, challenges: &challenges) == .authentic)
        #expect(challenges.drawn.count == 1)
    }

    @Test(arguments: Vectors.cards.map(\.card_number))
    func internalAuthenticateMatchesTheVector(_ number: String) throws {
        let v = Vectors.cards.first { $0.card_number == number }!
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator(number)))
        try session.select()
        let r = try session.internalAuthenticate(challenge: [UInt8](hex: v.internal_authenticate["challenge"]!)!)
        #expect(r.status == .success)
        #expect(r.data.hexString == v.internal_authenticate["response"])
    }

    @Test func freshChallengeEverySession() throws {
        var challenges = RecordingChallenges()
        for _ in 0..<2 {
            let session = CardSession(channel: EmulatedChannel(Vectors.emulator("3307820000000017")))
            _ = try session.authenticate(session.read(), trust: Vectors.trust, challenges: &challenges)
        }
        #expect(challenges.drawn.count == 2 && challenges.drawn[0] != challenges.drawn[1])
    }

    @Test func tamperedHolderFailsTheIssuerSignature() throws {
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator("3307820000000017", Misbehaviour(tamperHolder: true))))
        let readout = try session.read()
        #expect(readout.holder.name != "王秀英")
        var c = FixedChallenge()
        #expect(try session.authenticate(readout, trust: Vectors.trust, challenges: &c) == .notAuthentic(.issuerSignatureInvalid))
    }

    @Test func clonedCardFailsInternalAuthenticate() throws {
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator("3307820000000017", Misbehaviour(wrongCardKey: true))))
        var c = FixedChallenge()
        #expect(try session.authenticate(session.read(), trust: Vectors.trust, challenges: &c) == .notAuthentic(.internalAuthenticateFailed))
    }

    @Test func unknownIssuerKeyIsNotAuthentic() throws {
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator("3307820000000017")))
        var c = FixedChallenge()
        #expect(try session.authenticate(session.read(), trust: TrustStore(), challenges: &c) == .notAuthentic(.unknownIssuerKey("330782-issuer-test")))
    }

    @Test func transportRulesThroughTheApplication() throws {
        for m in [Misbehaviour(getResponseChunk: 7), Misbehaviour(getResponseChunk: 255), Misbehaviour(wrongLe: true),
                  Misbehaviour(getResponseChunk: 16, wrongLe: true)] {
            let session = CardSession(channel: EmulatedChannel(Vectors.emulator("3307820000000017", m)))
            var c = FixedChallenge()
            let readout = try session.read()
            #expect(readout.usage?.sequence == 3)
            #expect(try session.authenticate(readout, trust: Vectors.trust, challenges: &c) == .authentic)
        }
    }

    @Test func strangeCardsAreTypedErrors() throws {
        var d = Vectors.description("3307820000000017")
        // No application of ours: every SELECT answers 6A 82.
        let other = try CardEmulator(description: d)
        let raw = EmulatedChannel(other)
        #expect(try raw.transmit(CommandAPDU(ins: 0xA4, p1: 4, p2: 0, data: [0xA0, 0, 0, 0, 3], le: 0)).status == .fileNotFound)

        d.files.holder = "70 03 DF 21 05"                          // truncated TLV
        let broken = CardSession(channel: EmulatedChannel(try CardEmulator(description: d)))
        #expect(throws: CardError.self) { try broken.read() }

        d = Vectors.description("3307820000000017")
        d.files.usage = "72 03 DF 41 04"
        let badUsage = CardSession(channel: EmulatedChannel(try CardEmulator(description: d)))
        do { _ = try badUsage.read(); Issue.record("read a malformed EF.USAGE") } catch let e as CardError {
            guard case .unreadable = e else { Issue.record("\(e)"); return }
        }
    }
}

@Suite struct UsageRecordTests {
    @Test func vectorRecordParsesAndVerifies() throws {
        let bytes = [UInt8](hex: Vectors.description("3307820000000017").files.usage!)!
        let r = try UsageRecord(fileBytes: bytes)
        #expect(r.sequence == 3)
        #expect(r.body?.period == "2026" && r.body?.terminalID == "KSK-TEST-0002" && r.body?.writtenAt == "2026-10-08T01:15:00Z")
        #expect(r.body?.entries == [UsageRecord.Entry(program: "HM-SUBSIDY", usedFen: 12000)])
        #expect(r.used(program: "HM-SUBSIDY", period: "2026") == 12000)
        #expect(r.used(program: "HM-SUBSIDY", period: "2027") == 0)
        #expect(r.trust(deviceKeys: Vectors.trust.deviceKeys) == .trusted(deviceID: "KSK-TEST-0002"))
        #expect(r.trust(deviceKeys: [:]) == .untrusted(.unknownDevice("KSK-TEST-0002")))
        #expect(r.trust(deviceKeys: ["KSK-TEST-0002": Vectors.device("KSK-TEST-0001").public]) == .untrusted(.badSignature))
    }

    @Test func emptyRecordOfANewCard() throws {
        let r = try UsageRecord(fileBytes: [0x72, 0x00, 0xFF, 0xFF])
        #expect(r.isEmpty && r.sequence == 0 && r.trust(deviceKeys: [:]) == .empty)
    }

    /// vectors/README: a bill of 10000 on …0017 writes sequence 4, period 2026, one entry HM-SUBSIDY 30000.
    @Test func encodeSignsAndParsesBack() throws {
        let signer = Vectors.device("KSK-TEST-0001").private
        let at = ISO8601DateFormatter().date(from: "2026-11-22T03:00:00Z")!
        let bytes = try UsageRecord.encode(period: "2026", sequence: 4, terminalID: "KSK-TEST-0001", writtenAt: at,
                                           entries: [.init(program: "HM-SUBSIDY", usedFen: 30000)], signer: signer)
        let r = try UsageRecord(fileBytes: bytes)
        #expect(r.sequence == 4 && r.body?.writtenAt == "2026-11-22T03:00:00Z")
        #expect(r.used(program: "HM-SUBSIDY", period: "2026") == 30000)
        #expect(r.trust(deviceKeys: Vectors.trust.deviceKeys) == .trusted(deviceID: "KSK-TEST-0001"))
        var tampered = bytes
        tampered[tampered.count - 70] ^= 0x01   // a byte of the last entry's amount
        #expect(try UsageRecord(fileBytes: tampered).trust(deviceKeys: Vectors.trust.deviceKeys) == .untrusted(.badSignature))
    }

    @Test func nextCarriesTheSamePeriodAndResetsANewOne() throws {
        let r = try UsageRecord(fileBytes: [UInt8](hex: Vectors.description("3307820000000017").files.usage!)!)
        let same = try r.next(period: "2026", setting: [("HM-SUBSIDY", 30000), ("HM-CS-OUTPATIENT", 500)])
        #expect(same.sequence == 4 && same.entries == [.init(program: "HM-SUBSIDY", usedFen: 30000), .init(program: "HM-CS-OUTPATIENT", usedFen: 500)])
        let newYear = try r.next(period: "2027", setting: [("HM-SUBSIDY", 10000)])
        #expect(newYear.sequence == 4 && newYear.entries == [.init(program: "HM-SUBSIDY", usedFen: 10000)])
        #expect(throws: UsageWriteError.tooManyPrograms) {
            try UsageRecord.empty.next(period: "2026", setting: [("A", 1), ("B", 1), ("C", 1), ("D", 1)])
        }
    }

    @Test func malformedRecordsAreUnreadable() {
        let cases = ["72 03 DF 41 04", "71 00", "72 06 DF 41 04 32 30 32 36",
                     "72 44 DF 46 40" + String(repeating: "00", count: 64)]   // signature but no fields
        for hex in cases {
            #expect(throws: CardFormatError.self, "\(hex)") { try UsageRecord(fileBytes: [UInt8](hex: hex)!) }
        }
    }
}

@Suite struct WriteTests {
    static let at = ISO8601DateFormatter().date(from: "2026-11-22T03:00:00Z")!

    func record(_ seq: UInt32, _ used: Int64 = 30000) throws -> [UInt8] {
        try UsageRecord.encode(period: "2026", sequence: seq, terminalID: "KSK-TEST-0001", writtenAt: Self.at,
                               entries: [.init(program: "HM-SUBSIDY", usedFen: used)], signer: Vectors.device("KSK-TEST-0001").private)
    }

    func session(_ m: Misbehaviour = Misbehaviour()) throws -> (CardSession, CardEmulator) {
        let e = Vectors.emulator("3307820000000017", m)
        let s = CardSession(channel: EmulatedChannel(e))
        _ = try s.read()
        return (s, e)
    }

    @Test func writeOnlyWithTheNextSequence() throws {
        let (s, e) = try session()
        #expect(throws: CardError.writeRefused(StatusWord(0x6985))) { try s.writeUsage(record(3)) }
        #expect(throws: CardError.writeRefused(StatusWord(0x6985))) { try s.writeUsage(record(5)) }
        try s.writeUsage(record(4))
        #expect(e.file(3) == (try record(4)))
        #expect(throws: CardError.writeRefused(StatusWord(0x6985))) { try s.writeUsage(record(4)) }   // replay
        #expect(throws: CardError.writeRefused(StatusWord(0x6A80))) { try s.writeUsage([0x72, 0x03, 0xDF, 0x41, 0x04]) }
        #expect(throws: CardError.writeRefused(StatusWord(0x6A80))) { try s.writeUsage([0x72, 0x00]) }
        #expect(try UsageRecord(fileBytes: e.file(3)!).sequence == 4)
    }

    @Test func pulledBeforeTheWriteKeepsTheOldRecord() throws {
        let (s, e) = try session(Misbehaviour(pullBeforeWrite: true))
        let before = e.file(3)
        #expect(throws: CardError.cardRemoved) { try s.writeUsage(record(4)) }
        #expect(e.file(3) == before)
    }

    @Test func pulledAfterTheWriteHoldsTheNewRecord() throws {
        let (s, e) = try session(Misbehaviour(pullAfterWrite: true))
        #expect(throws: CardError.cardRemoved) { try s.writeUsage(record(4)) }
        #expect(try UsageRecord(fileBytes: e.file(3)!).sequence == 4)
    }

    @Test func refusedWrites() throws {
        let (s, e) = try session(Misbehaviour(refuseWrites: true))
        let before = e.file(3)
        #expect(throws: CardError.writeRefused(.memoryFailure)) { try s.writeUsage(record(4)) }
        #expect(e.file(3) == before)
    }

    @Test func legalAidCardHasNoUsageFile() throws {
        let e = Vectors.emulator("3307820000100025")
        let ch = EmulatedChannel(e)
        let s = CardSession(channel: ch)
        #expect(try s.select() == .legalAid)
        #expect(try s.readFile(sfi: 3) == nil)
        // A write to it is refused by the card.
        #expect(try ch.transmit(CommandAPDU(ins: 0xD6, p1: 0x83, p2: 0, data: record(1))).status == .conditionsNotSatisfied)
    }

    @Test func commandsBeforeSelectAreRefusedByTheCard() throws {
        let ch = EmulatedChannel(Vectors.emulator("3307820000000017"))
        #expect(try ch.transmit(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0)).status == .conditionsNotSatisfied)
        #expect(try ch.transmit(CommandAPDU(cla: 0x80, ins: 0xB0, p1: 0x81, p2: 0, le: 0)).status == .claNotSupported)
        #expect(try ch.transmit(CommandAPDU(ins: 0x12, p1: 0, p2: 0)).status == .insNotSupported)
    }
}
