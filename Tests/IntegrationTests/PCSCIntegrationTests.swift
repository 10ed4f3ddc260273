import KioskProtocol
import BenefitCard
import Crypto
import KioskStore
import Foundation
import SmartCard
import TestVectors
import Testing
import VirtualCard

/// Through real pcscd + vpcd + the emulator. One virtual reader, so one test at a time.
@Suite(.serialized) struct PCSCIntegrationTests {
    @Test func pcscdListsTheVirtualReaders() throws {
        let readers = try PCSCContext().readers()
        #expect(readers.contains(Harness.reader))
        #expect(!ReaderFilter(allowVirtual: false).accepts(Harness.reader))
        #expect(ReaderFilter(allowVirtual: true).accepts(Harness.reader))
    }

    @Test(arguments: Vectors.cards.map(\.card_number))
    func everyVectorCardThroughPCSCD(_ number: String) throws {
        let v = try #require(Vectors.cards.first { $0.card_number == number })
        try Harness.withCard(Vectors.emulator(number)) { ctx, _ in
            let connection = try ctx.connect(reader: Harness.reader)
            #expect(try connection.atr() == CardEmulator.atr)
            try connection.withTransaction { channel in
                let session = CardSession(channel: channel)
                let readout = try session.read()
                #expect(readout.holder.cardNumber == number && readout.holder.name == v.name)
                #expect(readout.type.rawValue == v.type)
                var c = SystemChallengeSource()
                #expect(try session.authenticate(readout, trust: Vectors.trust, challenges: &c) == .authentic)
                // The vector's fixed challenge gives the vector's answer through pcscd too.
                let r = try session.internalAuthenticate(challenge: Array(0..<32))
                #expect(r.data.hexString == v.internal_authenticate["response"])
            }
        }
    }

    @Test func tamperedAndClonedCardsAreNotAuthentic() throws {
        let cases: [(Misbehaviour, NotAuthenticReason)] = [
            (Misbehaviour(tamperHolder: true), .issuerSignatureInvalid),
            (Misbehaviour(wrongCardKey: true), .internalAuthenticateFailed),
        ]
        for (m, reason) in cases {
            try Harness.withCard(Vectors.emulator("3307820000000017", m)) { ctx, _ in
                let session = CardSession(channel: try ctx.connect(reader: Harness.reader))
                var c = SystemChallengeSource()
                #expect(try session.authenticate(session.read(), trust: Vectors.trust, challenges: &c) == .notAuthentic(reason))
            }
        }
    }

    @Test func getResponseAndWrongLeThroughPCSCD() throws {
        for m in [Misbehaviour(getResponseChunk: 16), Misbehaviour(wrongLe: true)] {
            try Harness.withCard(Vectors.emulator("3307820000000017", m)) { ctx, _ in
                let connection = try ctx.connect(reader: Harness.reader)
                let session = CardSession(channel: connection)
                var c = SystemChallengeSource()
                #expect(try session.authenticate(session.read(), trust: Vectors.trust, challenges: &c) == .authentic)
                // The raw answer really was 61xx / 6Cxx: the rules were needed.
                let raw = try connection.transmitRaw(CommandAPDU(ins: 0xB0, p1: 0x81, p2: 0, le: 0).bytes)
                #expect(raw.count == 2 && (raw[0] == 0x61 || raw[0] == 0x6C))
            }
        }
    }

    /// Every case of write-vectors.json through pcscd: each APDU's answer and status word,
    /// and what the card holds afterwards (card spec §5.2–5.4).
    @Test func everyWriteVectorThroughPCSCD() throws {
        let cases = try #require(Vectors.json("write-vectors.json")["cases"] as? [[String: Any]])
        #expect(cases.count == 35)
        for c in cases {
            let name = c["name"] as? String ?? "?"
            let number = try #require(c["card_number"] as? String)
            var d = Vectors.description(number)
            d.files.usage = c["stored_usage"] as? String
            let emulator = try CardEmulator(description: d)
            let steps = try #require(c["steps"] as? [[String: Any]])
            try Harness.withCard(emulator) { ctx, _ in
                let connection = try ctx.connect(reader: Harness.reader)
                try connection.withTransaction { _ in
                    for step in steps {
                        let apdu = try #require((step["apdu"] as? String).flatMap { [UInt8](hex: $0) })
                        let command = step["command"] as? String ?? ""
                        // The card draws the challenge the vector shows (random on a real card).
                        if command == "GET CHALLENGE", let challenge = step["response"] as? String {
                            emulator.setFixedChallenge([UInt8](hex: challenge))
                        }
                        let answer = try connection.transmitRaw(apdu)
                        // SELECT's FCI is not in the vectors: its status word is.
                        let got = command == "SELECT" ? Array(answer.suffix(2)).hexString : answer.hexString
                        let expected = (step["response"] as? String ?? "") + (step["sw"] as? String ?? "")
                        #expect(got == expected, "\(name): \(command)")
                    }
                }
            }
            #expect(emulator.usageObject?.hexString == (c["usage_after"] as? String), "\(name): what the card holds")
        }
    }

    /// A cardholder with a USB reader plays the attacker with raw APDUs (the script runner):
    /// writing a lower figure back, replaying another card's record, writing without a
    /// certificate or with a foreign CA's. The card refuses each; it keeps its record.
    @Test func anAttackerWithAUSBReaderIsRefusedByTheCard() throws {
        let write = try #require(Vectors.json("write-vectors.json")["write"] as? [String: Any])
        let emulator = Vectors.emulator("3307820000000017")
        let held = emulator.usageObject
        let certificate = try #require(write["certificate"] as? String)
        // Lower figure: sequence 4, HM-SUBSIDY 0, signed by a key the attacker made up.
        let attacker = Curve25519.Signing.PrivateKey()
        let lower = try UsageRecord.encode(cardNumber: "3307820000000017", period: "2026", sequence: 4, terminalID: "KSK-TEST-0001",
                                           writtenAt: try #require(Timestamp.date("2026-11-22T03:00:00Z")), entries: [.init(program: "HM-SUBSIDY", usedFen: 0)],
                                           challenge: Array(repeating: 0, count: 16), signer: attacker)
        // Another card's genuine record replayed onto this one.
        let other = try #require(try Self.writeCaseGlobal("first_write_two_programs")["usage_after"] as? String)
        let scripts: [(String, String)] = [
            ("no certificate", "00A4040008F14855494D494E0100\n0084000010\n00D68300\(String(format: "%02X", lower.count))\(lower.hexString)00"),
            ("replayed record", "00A4040008F14855494D494E0100\n002A00BE\(String(format: "%02X", certificate.count / 2))\(certificate)\n0084000010\n00D68300\(String(format: "%02X", other.count / 2))\(other)00"),
            ("lower figure, own key", "00A4040008F14855494D494E0100\n002A00BE\(String(format: "%02X", certificate.count / 2))\(certificate)\n0084000010\n00D68300\(String(format: "%02X", lower.count))\(lower.hexString)00"),
        ]
        for (what, text) in scripts {
            let script = try APDUScript(text)
            try Harness.withCard(emulator) { ctx, _ in
                let connection = try ctx.connect(reader: Harness.reader)
                let results = try script.run(raw: connection)
                let last = try #require(results.last)
                #expect(!last.response.status.isSuccess, "\(what) was accepted")
            }
            #expect(emulator.usageObject == held, "\(what) changed the card")
        }
    }

    static func writeCaseGlobal(_ name: String) throws -> [String: Any] {
        let cases = try #require(Vectors.json("write-vectors.json")["cases"] as? [[String: Any]])
        return try #require(cases.first { $0["name"] as? String == name })
    }

    @Test(arguments: [false, true])
    func cardPulledAroundTheWrite(after: Bool) throws {
        let write = try #require(Vectors.json("write-vectors.json")["write"] as? [String: Any])
        let object = try #require((write["usage_object"] as? String).flatMap { [UInt8](hex: $0) })
        let cert = try DeviceCertificate(bytes: try #require((write["certificate"] as? String).flatMap { [UInt8](hex: $0) }))
        let emulator = Vectors.emulator("3307820000000017", Misbehaviour(pullBeforeWrite: !after, pullAfterWrite: after))
        emulator.setFixedChallenge([UInt8](hex: "00112233445566778899AABBCCDDEEFF"))
        let key = try #require(Data(base64Encoded: Vectors.cards[0].card_public_key))
        try Harness.withCard(emulator) { ctx, client in
            let session = CardSession(channel: try ctx.connect(reader: Harness.reader))
            _ = try session.read()
            try session.verifyCertificate(cert)
            let challenge = try session.getChallenge()
            #expect(throws: CardError.cardRemoved) {
                _ = try session.writeUsage(object, cardNumber: "3307820000000017", sequence: 4, challenge: challenge,
                                           cardPublicKey: [UInt8](key))
            }
            #expect(client.waitUntilRemoved(timeout: 5))
            #expect(try ctx.waitForCard(in: Harness.reader, present: false, timeout: 5))
        }
        // Back on the reader: the card holds the old record (pulled before) or the new one (after).
        try Harness.withCard(emulator) { ctx, _ in
            let r = try #require(try CardSession(channel: try ctx.connect(reader: Harness.reader)).read().usage)
            #expect(r.sequence == (after ? 4 : 3))
        }
    }

    @Test func aPulledCardIsReportedGone() throws {
        try Harness.withCard(Vectors.emulator("3307820000000017")) { ctx, client in
            let connection = try ctx.connect(reader: Harness.reader)
            let session = CardSession(channel: connection)
            try session.select()
            client.remove()
            #expect(try ctx.waitForCard(in: Harness.reader, present: false, timeout: 5))
            #expect(throws: CardError.cardRemoved) { _ = try session.readFile(sfi: 1) }
        }
    }

    @Test func watcherReportsReadersAndCards() async throws {
        // Every wait for an event has a deadline (WatcherEvents.next): a quiet watcher fails
        // this test instead of hanging the suite.
        let it = WatcherEvents(ReaderWatcher(filter: ReaderFilter(allowVirtual: true)))
        var seen: [ReaderEvent] = []
        let deadline = Date().addingTimeInterval(30)
        while !(seen.contains(.readerAdded("Virtual PCD 00 00")) && seen.contains(.readerAdded("Virtual PCD 00 01"))) {
            guard Date() < deadline else { Issue.record("both readers not reported within 30 s: \(seen)"); return }
            guard let e = try await it.next() else { Issue.record("watcher ended"); return }
            seen.append(e)
        }
        let client = VPCDClient(emulator: Vectors.emulator("3307820000000058"), port: Harness.port)
        try client.insert()
        #expect(try await it.next() == .cardInserted(reader: Harness.reader, atr: CardEmulator.atr))
        client.remove()
        #expect(try await it.next() == .cardRemoved(reader: Harness.reader))
    }

    @Test func kioskctlInspectThroughPCSCD() throws {
        let keys = try Harness.product("kioskctl").path   // built?
        _ = keys
        let trustFile = Vectors.url("test-keys.json").path
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            let (status, out, err) = try Harness.run("kioskctl", ["card", "inspect", "--virtual-readers", "--trust-file", trustFile, "--json"])
            #expect(status == 0, "\(err)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(json["card_number"] as? String == "3307********0017")
            #expect(json["holder_name"] as? String == "王**")
            #expect(json["authentic"] as? Bool == true)
            #expect(!out.contains("王秀英") && !out.contains("330782195603121285") && !out.contains("1956"))
            let usage = try #require(json["usage"] as? [String: Any])
            #expect(usage["sequence"] as? Int == 3 && usage["trusted"] as? Bool == true)
        }
        try Harness.withCard(Vectors.emulator("3307820000000017", Misbehaviour(wrongCardKey: true))) { _, _ in
            let (status, out, _) = try Harness.run("kioskctl", ["card", "inspect", "--virtual-readers", "--trust-file", trustFile, "--json"])
            #expect(status == 2)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(json["decision"] as? String == "card_not_authentic" && json["reason"] as? String == "internal_authenticate_failed")
            let (_, text, _) = try Harness.run("kioskctl", ["card", "inspect", "--virtual-readers", "--trust-file", trustFile])
            #expect(text.contains("NOT AUTHENTIC") && text.contains("INTERNAL AUTHENTICATE"))
        }
        // No card: a clear message and its exit status.
        let (status, _, err) = try Harness.run("kioskctl", ["card", "inspect", "--virtual-readers", "--trust-file", trustFile])
        #expect(status == 4 && err.contains("no card"))
    }

    @Test func kioskctlReaders() throws {
        let (status, out, _) = try Harness.run("kioskctl", ["readers", "--json"])
        #expect(status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let rows = try #require(json["readers"] as? [[String: Any]])
        #expect(rows.contains { $0["reader"] as? String == Harness.reader && $0["used"] as? Bool == false })
    }
}
