import BenefitCard
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
        let v = Vectors.cards.first { $0.card_number == number }!
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

    func usage(_ seq: UInt32, _ used: Int64) throws -> [UInt8] {
        try UsageRecord.encode(period: "2026", sequence: seq, terminalID: "KSK-TEST-0001",
                               writtenAt: ISO8601DateFormatter().date(from: "2026-11-22T03:00:00Z")!,
                               entries: [.init(program: "HM-SUBSIDY", usedFen: used)], signer: Vectors.device("KSK-TEST-0001").private)
    }

    @Test func usageWriteAndItsRefusals() throws {
        let emulator = Vectors.emulator("3307820000000017")
        try Harness.withCard(emulator) { ctx, _ in
            let session = CardSession(channel: try ctx.connect(reader: Harness.reader))
            let before = try session.read().usage!
            #expect(before.sequence == 3)
            try session.writeUsage(usage(4, 30000))
            #expect(throws: CardError.writeRefused(StatusWord(0x6985))) { try session.writeUsage(usage(4, 30000)) }
        }
        // Presented again: the new record is there, and trusted.
        try Harness.withCard(emulator) { ctx, _ in
            let r = try CardSession(channel: try ctx.connect(reader: Harness.reader)).read().usage!
            #expect(r.sequence == 4 && r.used(program: "HM-SUBSIDY", period: "2026") == 30000)
            #expect(r.trust(deviceKeys: Vectors.trust.deviceKeys) == .trusted(deviceID: "KSK-TEST-0001"))
        }
        emulator.setMisbehaviour(Misbehaviour(refuseWrites: true))
        try Harness.withCard(emulator) { ctx, _ in
            let session = CardSession(channel: try ctx.connect(reader: Harness.reader))
            _ = try session.read()
            #expect(throws: CardError.writeRefused(.memoryFailure)) { try session.writeUsage(usage(5, 31000)) }
        }
    }

    @Test(arguments: [false, true])
    func cardPulledAroundTheWrite(after: Bool) throws {
        let emulator = Vectors.emulator("3307820000000017", Misbehaviour(pullBeforeWrite: !after, pullAfterWrite: after))
        try Harness.withCard(emulator) { ctx, client in
            let session = CardSession(channel: try ctx.connect(reader: Harness.reader))
            _ = try session.read()
            #expect(throws: CardError.cardRemoved) { try session.writeUsage(usage(4, 30000)) }
            #expect(client.waitUntilRemoved(timeout: 5))
            #expect(try ctx.waitForCard(in: Harness.reader, present: false, timeout: 5))
        }
        // Back on the reader: the card holds the old record (pulled before) or the new one (after).
        try Harness.withCard(emulator) { ctx, _ in
            let r = try CardSession(channel: try ctx.connect(reader: Harness.reader)).read().usage!
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
        let watcher = ReaderWatcher(filter: ReaderFilter(allowVirtual: true))
        var it = watcher.makeAsyncIterator()
        var seen: [ReaderEvent] = []
        while !(seen.contains(.readerAdded("Virtual PCD 00 00")) && seen.contains(.readerAdded("Virtual PCD 00 01"))) {
            guard let e = await it.next() else { Issue.record("watcher ended"); return }
            seen.append(e)
        }
        let client = VPCDClient(emulator: Vectors.emulator("3307820000000058"), port: Harness.port)
        try client.insert()
        #expect(await it.next() == .cardInserted(reader: Harness.reader, atr: CardEmulator.atr))
        client.remove()
        #expect(await it.next() == .cardRemoved(reader: Harness.reader))
    }

    @Test func kioskctlInspectThroughPCSCD() throws {
        let keys = try Harness.product("kioskctl").path   // built?
        _ = keys
        let trustFile = Vectors.url("test-keys.json").path
        try Harness.withCard(Vectors.emulator("3307820000000017")) { _, _ in
            let (status, out, err) = try Harness.run("kioskctl", ["card", "inspect", "--virtual-readers", "--trust-file", trustFile, "--json"])
            #expect(status == 0, "\(err)")
            let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
            #expect(json["card_number"] as? String == "3307********0017")
            #expect(json["holder_name"] as? String == "王**")
            #expect(json["authentic"] as? Bool == true)
            #expect(!out.contains("王秀英") && !out.contains("330782195603121285"))
            let usage = json["usage"] as! [String: Any]
            #expect(usage["sequence"] as? Int == 3 && usage["trusted"] as? Bool == true)
        }
        try Harness.withCard(Vectors.emulator("3307820000000017", Misbehaviour(wrongCardKey: true))) { _, _ in
            let (status, out, _) = try Harness.run("kioskctl", ["card", "inspect", "--virtual-readers", "--trust-file", trustFile, "--json"])
            #expect(status == 2)
            let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
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
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        let rows = json["readers"] as! [[String: Any]]
        #expect(rows.contains { $0["reader"] as? String == Harness.reader && $0["used"] as? Bool == false })
    }
}
