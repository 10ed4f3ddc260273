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
        let v = try #require(Vectors.cards.first { $0.card_number == number })
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator(number)))
        let readout = try session.read()
        #expect(readout.type == (v.type == "medical" ? .medical : .legalAid))
        #expect(readout.holder.name == v.name && readout.holder.personRef == v.person_ref)
        #expect((readout.usage != nil) == (v.type == "medical"))
        var challenges = RecordingChallenges()
        #expect(try session.authenticate(readout, trust: Vectors.trust, challenges: &challenges) == .authentic)
        #expect(challenges.drawn.count == 1)
    }

    @Test(arguments: Vectors.cards.map(\.card_number))
    func internalAuthenticateMatchesTheVector(_ number: String) throws {
        let v = try #require(Vectors.cards.first { $0.card_number == number })
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator(number)))
        try session.select()
        let r = try session.internalAuthenticate(challenge: Fx.hex(v.internal_authenticate["challenge"]))
        #expect(r.status == .success)
        #expect(r.data.hexString == v.internal_authenticate["response"])
        // The card signs the digest of the EF.USAGE it holds (72 00 on a legal-aid card), which the terminal reads.
        let readout = try session.read()
        #expect(CardSession.usageDigest(of: readout).map { String(format: "%02x", $0) }.joined() == v.internal_authenticate["usage_sha256"])
    }

    /// cards.json `forgeries`: each one, emulated, is not authentic, for the reason the vectors give.
    @Test(arguments: ["name_changed", "cloned", "stale_usage"])
    func forgeriesAreNotAuthentic(_ name: String) throws {
        let all = try #require(Vectors.json("cards.json")["forgeries"] as? [[String: Any]])
        let f = try #require(all.first { $0["name"] as? String == name })
        var d = Vectors.description(try #require(f["based_on"] as? String))
        let files = try #require(f["files"] as? [String: String])
        d.cardPrivateSeed = try #require(f["card_private_seed"] as? String)
        var m = Misbehaviour()
        if name == "stale_usage" {
            // A relay: the genuine card (its own files) behind a terminal shown the older EF.USAGE.
            m.staleUsage = try Fx.hex(files["usage"])
        } else {
            d.files = .init(holder: try #require(files["holder"]), signature: try #require(files["signature"]), usage: files["usage"])
        }
        let session = CardSession(channel: EmulatedChannel(try CardEmulator(description: d, misbehaviour: m)))
        let readout = try session.read()
        var c = FixedChallenge()
        let expected: Authenticity = name == "name_changed" ? .notAuthentic(.issuerSignatureInvalid) : .notAuthentic(.internalAuthenticateFailed)
        #expect(try session.authenticate(readout, trust: Vectors.trust, challenges: &c) == expected)
        // The forged card's answer is the vectors' own.
        let ia = try #require(f["internal_authenticate"] as? [String: String])
        #expect(try session.internalAuthenticate(challenge: Array(0..<32)).data.hexString == ia["response"])
        if name == "stale_usage" {
            #expect(readout.usage?.sequence == 2 && readout.usage?.used(program: "HM-SUBSIDY", period: "2026") == 8000)
        }
    }

    @Test func versionOneCardsAreUnreadable() throws {
        func fci(_ version: [UInt8]?) -> [UInt8] {
            var prop = [TLV(tag: 0xDF01, value: [0x01])]
            if let version { prop.insert(TLV(tag: 0x9F08, value: version), at: 0) }
            return TLV.constructed(0x6F, [TLV(tag: 0x84, value: CardType.medical.aid), TLV.constructed(0xA5, prop)]).encoded
        }
        #expect(throws: Never.self) { try CardSession.checkFCI(fci([0x02, 0x00]), for: .medical) }
        #expect(throws: Never.self) { try CardSession.checkFCI(fci([0x02, 0x01]), for: .medical) }
        #expect(throws: CardError.self) { try CardSession.checkFCI(fci([0x01, 0x00]), for: .medical) }
        #expect(throws: CardError.self) { try CardSession.checkFCI(fci(nil), for: .medical) }
    }

    @Test func sessionMisuseThrowsInsteadOfTrapping() throws {
        let session = CardSession(channel: EmulatedChannel(Vectors.emulator("3307820000000017")))
        #expect(throws: CardError.self) { try session.readFile(sfi: 1) }
        #expect(throws: CardError.self) { try session.internalAuthenticate(challenge: Array(0..<32)) }
        #expect(throws: CardError.self) { try session.getChallenge() }
        try session.select()
        #expect(throws: CardError.self) { try session.internalAuthenticate(challenge: Array(0..<16)) }
    }

    @Test func unknownErrorsStayVisible() {
        struct Strange: Error, CustomStringConvertible { var description: String { "strange thing" } }
        let e = CardError(Strange())
        guard case .unexpected(let what) = e else { Issue.record("\(e)"); return }
        #expect(what.contains("Strange") && what.contains("strange thing"))
        #expect(e != .unreadable(.fileMissing("x")) && e != .pcsc(.other(code: 0)))
        #expect(CardError(PCSCError.removedCard) == .cardRemoved)
        #expect(CardError(CardFormatError.fileMissing("EF.HOLDER")) == .unreadable(.fileMissing("EF.HOLDER")))
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
        // A version-1 record (no DF48) is unreadable too.
        let stored = try Fx.hex(Vectors.description("3307820000000017").files.usage)
        var v1 = try #require(try UsageRecord(fileBytes: stored).body)
        v1.signedBytes = Array(v1.signedBytes.dropLast(18))
        d.files.usage = UsageRecord(sequence: 3, body: v1).object.hexString
        let v1Session = CardSession(channel: EmulatedChannel(try CardEmulator(description: d)))
        #expect(throws: CardError.self) { try v1Session.read() }
    }
}

