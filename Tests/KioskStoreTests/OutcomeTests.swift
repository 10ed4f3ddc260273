import BenefitCard
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import SmartCard
import TestVectors
import Testing
import VirtualCard

/// Issue 8: one mapping from outcomes to code, screen text, HTTP and exit status; bills
/// validated once; a torn write's bill ends as granted on the next tap.
@Suite struct OutcomeTests {
    @Test func oneMappingForEveryFailure() {
        #expect(Outcomes.report(LedgerError.duplicateBill("B1")).code == "bill_already_subsidised")
        #expect(Outcomes.report(LedgerError.duplicateBill("B1")).exit == .refused)
        #expect(Outcomes.report(LedgerError.pendingExists(cardNumber: "1")).code == "card_pending")
        // A ledger refusal is never dressed up as a card problem.
        for e: Error in [LedgerError.staleDecision(program: "P"), LedgerError.overLimit(program: "P")] {
            #expect(Outcomes.report(e).code != ReasonCode.cardUnreadable.rawValue)
        }
        #expect(Outcomes.report(StoreError(kind: .diskFull, message: "full")).code == "disk_full")
        #expect(Outcomes.report(StoreError(kind: .other, message: "x")).httpStatus == 503)
        #expect(Outcomes.report(CardError.cardRemoved).code == "card_removed")
        #expect(Outcomes.report(CardError.cardRemoved).exit == .noCard)
        #expect(Outcomes.report(CardError.writeRefused(.updateBinary, StatusWord(0x6985))).code == "card_write_refused")
        #expect(Outcomes.report(CardError.serviceUnavailable).exit == .serviceUnavailable)
        #expect(Outcomes.report(CocoaError(.fileNoSuchFile)).code == "internal_error")
        #expect(Outcomes.report(ReasonCode.granted).exit == .ok && Outcomes.report(ReasonCode.limitExhausted).exit == .declined)
        #expect(Outcomes.report(ReasonCode.cardNotAuthentic).exit == .notAuthentic)
    }

    @Test func billsAreCheckedOnce() throws {
        try BillError.check(billFen: 1, billReference: "H01-20261122-000123")
        try BillError.check(billFen: 99_999_999, billReference: String(repeating: "A", count: 64))
        // Printable ASCII is allowed (hospital systems differ); the screens escape it fully.
        try BillError.check(billFen: 1, billReference: "<!--<script>")
        for (fen, ref) in [(0 as Int64, "B"), (-1, "B"), (100_000_000, "B"), (1, ""), (1, String(repeating: "A", count: 65)),
                           (1, "B 1"), (1, "B\u{0}"), (1, "账单1")] {
            #expect(throws: BillError.self, "\(fen) \(ref)") { try BillError.check(billFen: fen, billReference: ref) }
        }
    }

    @Test func theBillAPIBodyIsStrict() throws {
        #expect(try BillRequest.parse(Array(#"{"bill_reference":"B1","bill_fen":12345}"#.utf8)) == BillRequest(billReference: "B1", billFen: 12345))
        let bad = [#"{"bill_reference":"B1","bill_fen":1.0}"#, #"{"bill_reference":"B1","bill_fen":1e3}"#, #"{"bill_reference":"B1","bill_fen":"100"}"#,
                   #"{"bill_reference":"B1","bill_fen":true}"#, #"{"bill_reference":"B1"}"#, #"{"bill_fen":100}"#, #"[1]"#, "bill_fen=100",
                   #"{"bill_reference":"B1","bill_fen":100,"x":1}"#, #"{"bill_reference":"B1","bill_fen":99999999999999999999}"#,
                   #"{"bill_reference":"\#(String(repeating: "A", count: 2000))","bill_fen":1}"#]
        for b in bad {
            #expect(throws: BillRequest.ParseError.self, "\(b.prefix(60))") { _ = try BillRequest.parse(Array(b.utf8)) }
        }
    }

    /// Issue 8 item 1: a card pulled during the write and tapped again for the same bill ends
    /// the bill (granted, the records of then), instead of jamming the kiosk.
    @Test func aTornWriteEndsTheBillOnTheNextTap() throws {
        let d = try Fixture.device()
        try d.store.installSnapshot(at: Fixture.url("snapshot-small.jsonl"), trustedAuthorities: Fixture.authorities, now: Fixture.now)
        let kiosk = Kiosk(device: d, clock: .fixed(Fixture.now))
        let e = Vectors.emulator("3307820000000017", Misbehaviour(pullAfterWrite: true))
        let torn = try kiosk.charge(EmulatedChannel(e), billFen: 10000, billReference: "H01-TORN")
        #expect(torn.decision.code == .cardRemoved && torn.records.isEmpty)
        let again = try kiosk.charge(EmulatedChannel(e), billFen: 10000, billReference: "H01-TORN")
        #expect(again.decision.code == .granted && again.alreadySubsidised)
        #expect(again.records.count == 1 && again.decision.subsidyFen == 10000 && again.decision.patientPaysFen == 0)
        #expect(try d.store.records().filter { $0.kind == .medicalSubsidy }.count == 1)
        // Sent a third time: the same answer, nothing new.
        let third = try kiosk.charge(EmulatedChannel(e), billFen: 10000, billReference: "H01-TORN")
        #expect(third.alreadySubsidised && third.records.map(\.recordID) == again.records.map(\.recordID))
        // Another card cannot take that bill.
        #expect(throws: LedgerError.duplicateBill("H01-TORN")) {
            _ = try kiosk.charge(EmulatedChannel(Vectors.emulator("3307820000000058")), billFen: 10000, billReference: "H01-TORN")
        }
    }
}
