import Crypto
import KioskProtocol
import Foundation
import HubRules
import GRDB
import ServiceLifecycle
import Synchronization

/// Storing a batch (upload spec §5): the checks that need the store, made inside one write
/// transaction, and the answers and records written a few hundred rows a statement.
extension HubDatabase {
    // MARK: storing a batch (upload spec §5)

    /// Answers and stores a batch whose sender is checked (§5 step 1: a registered, active
    /// device signed it, and every `record_id` names it), in one transaction, record by record
    /// in batch order: step 2 idempotence, step 3 order, then structure and step 4 content
    /// (the first failing check's reason), and step 5 flags. `received_at` is read from
    /// `now` inside the transaction.
    package func store(batchID: String, deviceID: String, device: Roster.Device, roster: Roster, sentAt: String, records: [IncomingRecord],
               consentStart: Date? = nil,
               now: @escaping @Sendable () -> Date, format: @escaping @Sendable (Date) -> String) async throws -> [RecordResult] {
        // The pure checks outside the writer's lock.
        let (subsidyFields, batchBills) = Self.batchSubsidies(records)
        // The cards' acknowledgements (Ed25519, the costly part) verified up front, on every core.
        let cardAcks = Self.cardAcks(subsidyFields, roster: roster)
        return try await engine.writeAsync { c in
            let instant = now()
            let receivedAt = format(instant)
            let checks = RecordChecks(deviceID: deviceID, institution: device.institution, consentStart: consentStart, batchBills: batchBills)
            let stored = SQLStoredFacts(c: c)
            // Inserts are gathered and written a few hundred rows a statement (on PostgreSQL a
            // statement is a round trip): before any check that reads stored records, and at
            // the end, so every check still sees this batch's earlier records.
            var writes = PendingWrites()
            // Step 2's first answers: those stored, read at once, and those given in this batch.
            var answered = try Self.firstAnswers(c, ids: records.map(\.recordID))
            var lastSeq = try Self.lastAnsweredSeq(c, deviceID: deviceID)
            var results: [RecordResult] = []
            results.reserveCapacity(records.count)
            var counts = (accepted: 0, duplicates: 0, rejected: 0)
            for (index, r) in records.enumerated() {
                let text = String(decoding: r.bytes, as: UTF8.self)
                // Step 2: a record_id answered before gets its first answer again, or `conflict`.
                if let first = answered[r.recordID] {
                    results.append(Self.answerAgain(first, r, text: text, deviceID: deviceID, receivedAt: receivedAt, batchID: batchID,
                                                    writes: &writes, counts: &counts))
                    continue
                }
                // Step 3: order; then the record's structure, step 4 (its content) and step 5 (its
                // flags), decided by the pure rules (`RecordChecks`) asking what is stored. What
                // this batch holds is written first when a check reads stored records.
                if r.seq == lastSeq + 1, r.structureRefusal == nil, RecordChecks.readsStored(r) { try writes.flush(c) }
                let decision = try checks.decide(r, lastSeq: lastSeq, subsidy: subsidyFields[index], cardAck: cardAcks[index],
                                                 roster: roster, stored: stored, now: instant)
                lastSeq = max(lastSeq, r.seq)
                switch decision {
                case .refuse(let refusal):
                    writes.answer(AnswerRow(recordID: r.recordID, deviceID: deviceID, seq: r.seq, sha256: r.sha256, status: .rejected,
                                            reason: refusal.reason, detail: refusal.detail, flags: "", answeredAt: receivedAt, batchID: batchID))
                    writes.rejection(r.recordID, deviceID, refusal.reason, body: text, sha256: r.sha256, receivedAt, batchID)
                    answered[r.recordID] = FirstAnswer(sha256: r.sha256, status: "rejected", reason: refusal.reason, detail: refusal.detail,
                                                       flags: "", answeredAt: receivedAt)
                    results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: refusal.reason, detail: refusal.detail)))
                    counts.rejected += 1
                case .accept(let flags):
                    let flagText = flags.joined(separator: ",")
                    try Self.writeAccepted(r, text: text, flagText: flagText, deviceID: deviceID, receivedAt: receivedAt, batchID: batchID, writes: &writes)
                    answered[r.recordID] = FirstAnswer(sha256: r.sha256, status: "accepted", reason: nil, detail: nil, flags: flagText, answeredAt: receivedAt)
                    results.append(RecordResult(recordID: r.recordID, status: .accepted(receivedAt: receivedAt, flags: flags)))
                    counts.accepted += 1
                }
            }
            try writes.flush(c)
            try c.execute("""
                INSERT INTO hub_batch (batch_id, device_id, sent_at, received_at, records, accepted, duplicates, rejected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, batchID, deviceID, sentAt, receivedAt, records.count, counts.accepted, counts.duplicates, counts.rejected)
            return results
        }
    }

    /// Each record's `medical_subsidy` fields (nil for the other kinds), and the batch's bills:
    /// the parts each bill has in this batch, a `record_id` counted once.
    static func batchSubsidies(_ records: [IncomingRecord]) -> (fields: [SubsidyFields?], bills: [BillKey: [BillPart]]) {
        var subsidies: [SubsidyFields?] = []
        var bills: [BillKey: [BillPart]] = [:]
        var seen = Set<String>()
        for r in records {
            guard let s = r.record?.medicalSubsidy else { subsidies.append(nil); continue }
            subsidies.append(s)
            if seen.insert(r.recordID).inserted {
                bills[s.billKey, default: []].append(BillPart(recordID: r.recordID, billFen: s.billFen, patientPaysFen: s.patientPaysFen,
                                                              subsidyFen: s.subsidyFen))
            }
        }
        return (subsidies, bills)
    }

    /// `RecordRules.cardAck` of each subsidy in `subsidies` (nil for the other records), verified on every core.
    static func cardAcks(_ subsidies: [SubsidyFields?], roster: Roster) -> [Refusal?] {
        var ackChecks = [Refusal?](repeating: nil, count: subsidies.count)
        ackChecks.withUnsafeMutableBufferPointer { out in
            let out = UncheckedBuffer(out)
            DispatchQueue.concurrentPerform(iterations: subsidies.count) { i in
                guard let s = subsidies[i] else { return }
                out.buffer[i] = RecordRules.cardAck(s, cardKey: roster.cards[s.cardNumber]?.publicKey)
            }
        }
        return ackChecks
    }

    /// A batch's answers counted by kind, as `hub_batch` stores them.
    typealias BatchCounts = (accepted: Int, duplicates: Int, rejected: Int)

    /// Step 2 for a `record_id` answered before: its first answer again (a refusal stored
    /// again as a refusal), or `conflict` when the content differs.
    static func answerAgain(_ first: FirstAnswer, _ r: IncomingRecord, text: String, deviceID: String, receivedAt: String, batchID: String,
                            writes: inout PendingWrites, counts: inout BatchCounts) -> RecordResult {
        if first.sha256 == r.sha256 {
            if first.status == "accepted" {
                counts.duplicates += 1
                return RecordResult(recordID: r.recordID, status: .duplicate(receivedAt: first.answeredAt, flags: Self.flags(first.flags)))
            } else {
                let reason = first.reason ?? "rejected"
                writes.rejection(r.recordID, deviceID, reason, body: text, sha256: r.sha256, receivedAt, batchID)
                counts.rejected += 1
                return RecordResult(recordID: r.recordID, status: .rejected(reason: reason, detail: first.detail))
            }
        } else {
            writes.rejection(r.recordID, deviceID, "conflict", body: text, sha256: r.sha256, receivedAt, batchID)
            counts.rejected += 1
            return RecordResult(recordID: r.recordID, status: .rejected(reason: "conflict",
                                                                         detail: "record_id answered before, with other content"))
        }
    }

    /// Step 5's writes for a record that passed every check: its `accepted` answer, then the
    /// record with its flags and the columns the checks look up.
    static func writeAccepted(_ r: IncomingRecord, text: String, flagText: String, deviceID: String, receivedAt: String, batchID: String,
                              writes: inout PendingWrites) throws {
        guard let record = r.record else { throw HubDatabaseError.inconsistent("record \(r.recordID) passed its checks without being read") }
        writes.answer(AnswerRow(recordID: r.recordID, deviceID: deviceID, seq: r.seq, sha256: r.sha256, status: .accepted,
                                reason: nil, detail: nil, flags: flagText, answeredAt: receivedAt, batchID: batchID))
        writes.record(RecordRow(recordID: r.recordID, deviceID: deviceID, seq: r.seq, record: record, body: text, sha256: r.sha256,
                                receivedAt: receivedAt, batchID: batchID, flags: flagText))
    }

    /// The first answer given to a `record_id` (upload spec §5 step 2).
    package struct FirstAnswer {
        var sha256: String
        var status: String
        var reason: String?
        var detail: String?
        var flags: String
        var answeredAt: String
    }

    /// The stored first answers of `ids`, a few hundred ids a statement.
    static func firstAnswers(_ c: any SQLConnection, ids: [String]) throws -> [String: FirstAnswer] {
        var out: [String: FirstAnswer] = [:]
        let unique = Array(Set(ids))
        for start in stride(from: 0, to: unique.count, by: 250) {
            let chunk = Array(unique[start..<min(start + 250, unique.count)])
            for row in try c.rows("SELECT record_id, sha256, status, reason, detail, flags, answered_at FROM hub_answer WHERE record_id IN (\(placeholderTuples(chunk.count, width: 1)))",
                                  arguments: chunk.map { .text($0) }) {
                out[try row.text("record_id")] = FirstAnswer(sha256: try row.text("sha256"), status: try row.text("status"), reason: try row.optionalText("reason"),
                                                             detail: try row.optionalText("detail"), flags: try row.optionalText("flags") ?? "",
                                                             answeredAt: try row.text("answered_at"))
            }
        }
        return out
    }

    /// Answers, records and refusals waiting to be written, in that order (a record's answer first).
    package struct PendingWrites {
        private var answers: [AnswerRow] = []
        private var records: [RecordRow] = []
        private var rejections: [RejectionRow] = []

        /// An answer to write.
        mutating func answer(_ row: AnswerRow) { answers.append(row) }
        /// An accepted record to write.
        mutating func record(_ row: RecordRow) { records.append(row) }
        private var bodies: [String: String] = [:]
        /// A refusal; its body kept once by digest (issue 21 item 3: a kiosk re-sending a
        /// conflicting record a thousand times stores its body once).
        mutating func rejection(_ recordID: String?, _ deviceID: String, _ reason: String, body: String, sha256: String, _ receivedAt: String,
                                _ batchID: String) {
            rejections.append(RejectionRow(recordID: recordID, deviceID: deviceID, reason: reason, bodySHA256: sha256, receivedAt: receivedAt, batchID: batchID))
            bodies[sha256] = body
        }

        mutating func flush(_ c: any SQLConnection) throws {
            try Self.insert(c, answers)
            try Self.insert(c, records)
            try Self.insert(c, rejections)
            try c.executeChunked(bodies.sorted { $0.key < $1.key }.map { [.text($0.key), .text($0.value)] }) {
                "INSERT INTO hub_rejected_body (sha256, body) VALUES \($0) ON CONFLICT (sha256) DO NOTHING"
            }
            bodies.removeAll(keepingCapacity: true)
            answers.removeAll(keepingCapacity: true)
            records.removeAll(keepingCapacity: true)
            rejections.removeAll(keepingCapacity: true)
        }

        /// Inserts `rows`, a few hundred a statement; each row binds itself.
        static func insert<Row: BoundRow>(_ c: any SQLConnection, _ rows: [Row]) throws {
            try c.executeChunked(rows.map(\.values)) { "INSERT INTO \(Row.insertHead) VALUES \($0)" }
        }
    }
}

/// A buffer written at distinct indices by `concurrentPerform`'s iterations.
///
/// `@unchecked Sendable`, and why that is sound: it is used only inside
/// `withUnsafeMutableBufferPointer`, by `DispatchQueue.concurrentPerform`, which returns after
/// every iteration has finished (so the pointer never outlives the array's borrow); iteration
/// `i` writes element `i` only and nothing reads the buffer until all have finished.
package struct UncheckedBuffer<T>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<T>
    init(_ buffer: UnsafeMutableBufferPointer<T>) { self.buffer = buffer }
}

/// What the hub answers for one record.
package struct RecordResult: Sendable, Equatable {
    package enum Status: Sendable, Equatable {
        case accepted(receivedAt: String, flags: [String])
        case duplicate(receivedAt: String, flags: [String])
        case rejected(reason: String, detail: String?)
    }
    package var recordID: String?
    package var status: Status
}

/// The stored records as `RecordChecks` asks about them, answered with SQL on the batch's
/// write transaction (so this batch's earlier records, once written, are seen too).
struct SQLStoredFacts: StoredFacts {
    let c: any SQLConnection

    func billParts(billReference: String, deviceID: String, cardNumber: String, cardSequence: Int64) throws -> [BillPart] {
        try c.rows("""
            SELECT record_id, bill_fen, patient_pays_fen, subsidy_fen FROM hub_record
            WHERE bill_reference = ? AND device_id = ? AND card_number = ? AND card_sequence = ? AND kind = 'medical_subsidy'
            """, billReference, deviceID, cardNumber, cardSequence).map {
            BillPart(recordID: try $0.text("record_id"), billFen: try $0.int("bill_fen"), patientPaysFen: try $0.int("patient_pays_fen"),
                     subsidyFen: try $0.int("subsidy_fen"))
        }
    }

    func ackUsedForAnotherBill(cardNumber: String, cardSequence: Int64, deviceID: String, billReference: String) throws -> String? {
        try c.text("""
            SELECT record_id FROM hub_record WHERE card_number = ? AND card_sequence = ? AND kind = 'medical_subsidy'
                AND NOT (device_id = ? AND bill_reference = ?) LIMIT 1
            """, cardNumber, cardSequence, deviceID, billReference)
    }

    func billUsedByAnotherDevice(billReference: String, institution: String, deviceID: String) throws -> String? {
        try c.text("SELECT device_id FROM hub_record WHERE bill_reference = ? AND institution = ? AND device_id != ? LIMIT 1",
                   billReference, institution, deviceID)
    }

    func reversalTarget(_ recordID: String) throws -> (kind: String, subsidyFen: Int64?)? {
        guard let row = try c.row("SELECT kind, subsidy_fen FROM hub_record WHERE record_id = ?", recordID) else { return nil }
        let kind = try row.text("kind")
        return (kind, kind == "medical_subsidy" ? try row.int("subsidy_fen") : nil)
    }

    func reversedBy(_ recordID: String) throws -> String? {
        try c.text("SELECT record_id FROM hub_record WHERE reverses = ?", recordID)
    }

    func legalAidBodies(cardNumber: String) throws -> [String] {
        try c.rows("SELECT body FROM hub_record WHERE kind = 'legal_aid_application' AND card_number = ?", cardNumber).map { try $0.text("body") }
    }
}

extension Roster: RosterFacts {
    /// The program's card type and limit, or nil.
    package func program(_ code: String) -> (cardType: String, limitFen: Int64?)? {
        programs[code].map { ($0.cardType, $0.limitFen) }
    }

    /// The card's person and roster key, or nil.
    package func card(_ number: String) -> (personRef: String, publicKey: [UInt8]?)? {
        cards[number].map { ($0.personRef, $0.publicKey) }
    }
}
