import KioskProtocol
import Foundation
import KioskStore
import Testing

/// Issue 21 item 6: personal data kept no longer than needed on a kiosk.
@Suite struct PersonalDataTests {
    static let device = DeviceContext(deviceID: "KSK-TEST-0001", institution: "330782-H01")
    static let phone = "13812345678"
    static func application(phone: String? = PersonalDataTests.phone) -> SettlementRecord.LegalAidApplication {
        .init(cardNumber: "3307820000100025", personRef: "8919243b61b2010949797f63b0328dfc", program: "LA-DIRECT", matter: "labor_remuneration",
              contactPhone: phone, cardUsageDigest: String(repeating: "ab", count: 32), cardAuth: Data(repeating: 7, count: 64).base64EncodedString())
    }

    /// Every byte of the store's files (the database, its WAL and shared memory).
    static func files(_ path: String) -> [UInt8] {
        ["", "-wal", "-shm"].flatMap { Array((try? Data(contentsOf: URL(fileURLWithPath: path + $0))) ?? Data()) }
    }

    @Test("a contact phone is kept apart from the immutable record and joined back byte for byte to send it; 30 days after the hub's answer it is gone from the files, and the record is untouched")
    func contactPhoneKeptApart() throws {
        let path = Fixture.tempDir().appendingPathComponent("k.sqlite").path
        let store = try KioskStore(path: path)
        let t0 = Fixture.now
        let stored = try #require(try store.recordLegalAidApplication(device: Self.device, application: Self.application(), now: t0))
        let whole = try SettlementRecord(recordID: stored.recordID, seq: stored.seq, createdAt: Timestamp.string(t0), snapshotID: nil,
                                         content: .legalAidApplication(Self.application())).json()
        // What is sent is exactly what the record would have held with the phone in it.
        #expect(stored.body == whole)
        #expect(try store.nextBatch(deviceID: Self.device.deviceID).map(\.body) == [whole])
        let raw = try store.pool.read { try String.fetchOne($0, sql: "SELECT body FROM record WHERE record_id = ?", arguments: [stored.recordID]) }
        #expect(raw?.contains(Self.phone) == false && raw?.contains(#""contact_phone":"kept-apart""#) == true)
        // An application without a phone is stored as it is.
        let none = try #require(try store.recordLegalAidApplication(device: Self.device, application: Self.application(phone: nil), now: t0))
        #expect(!none.body.contains("contact_phone"))

        // In the database file itself (checkpointed), as it would be after days: the check below can see it.
        _ = try store.pool.writeWithoutTransaction { try $0.checkpoint(.truncate) }
        #expect(Self.files(path).firstRange(of: Array(Self.phone.utf8)) != nil)

        // Acknowledged by the hub a minute later.
        let answered = t0.addingTimeInterval(60)
        _ = try store.applyResults([DeliveryResult(recordID: stored.recordID, outcome: .accepted(receivedAt: Timestamp.string(answered)))])
        #expect(try store.forgetExpired(now: answered.addingTimeInterval(29 * 86_400)).contactPhones == 0)
        #expect(try store.record(stored.recordID)?.body == whole)
        #expect(try store.forgetExpired(now: answered.addingTimeInterval(30 * 86_400 + 1)).contactPhones == 1)
        let after = try #require(try store.record(stored.recordID))
        #expect(after.body == raw && after.status == .accepted)
        // Not in the database, not in its WAL: overwritten (secure_delete) and checkpointed.
        #expect(Self.files(path).firstRange(of: Array(Self.phone.utf8)) == nil, "the phone is still in the store's files")
    }

    @Test("the phone of an application the hub refused goes 30 days after it was made (a refusal keeps no received_at)")
    func refusedApplicationsPhone() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("k.sqlite").path)
        let t0 = Fixture.now
        let stored = try #require(try store.recordLegalAidApplication(device: Self.device, application: Self.application(), now: t0))
        _ = try store.applyResults([DeliveryResult(recordID: stored.recordID, outcome: .rejected(reason: "bad_card_auth"))])
        #expect(try store.forgetExpired(now: t0.addingTimeInterval(29 * 86_400)).contactPhones == 0)
        #expect(try store.forgetExpired(now: t0.addingTimeInterval(30 * 86_400 + 1)).contactPhones == 1)
        #expect(try store.record(stored.recordID)?.status == .rejected)
    }

    @Test("acknowledged records go 400 days after the hub received them, with their receipt lines; a record the hub never acknowledged is never deleted")
    func recordsAfter400Days() throws {
        let store = try KioskStore(path: Fixture.tempDir().appendingPathComponent("k.sqlite").path)
        let t0 = Fixture.now
        let acknowledged = try store.recordAlert(device: Self.device, code: "test", cardNumber: nil, detail: "old", now: t0)
        let queued = try store.recordAlert(device: Self.device, code: "test", cardNumber: nil, detail: "never sent", now: t0)
        let legal = try #require(try store.recordLegalAidApplication(device: Self.device, application: Self.application(), now: t0))
        try store.saveReceiptInfo(ReceiptInfo(recordID: acknowledged.recordID, holderMasked: "张*", allowanceLeftFen: nil, matterName: nil))
        _ = try store.applyResults([DeliveryResult(recordID: acknowledged.recordID, outcome: .accepted(receivedAt: Timestamp.string(t0))),
                                    DeliveryResult(recordID: legal.recordID, outcome: .accepted(receivedAt: Timestamp.string(t0)))])
        #expect(try store.forgetExpired(now: t0.addingTimeInterval(399 * 86_400)).records == 0)
        let f = try store.forgetExpired(now: t0.addingTimeInterval(400 * 86_400 + 1))
        #expect(f.records == 2)
        #expect(try store.record(acknowledged.recordID) == nil && store.record(legal.recordID) == nil)
        #expect(try store.record(queued.recordID)?.status == .queued)
        #expect(try store.forgetExpired(now: t0.addingTimeInterval(4000 * 86_400)).records == 0)
        // The schema refuses it too.
        #expect(throws: (any Error).self) { try store.pool.write { try $0.execute(sql: "DELETE FROM record WHERE record_id = ?", arguments: [queued.recordID]) } }
    }
}
