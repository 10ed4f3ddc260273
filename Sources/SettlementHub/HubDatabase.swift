import Crypto
import Foundation
import GRDB

/// One record as the hub holds it: its exact JSON, the SHA-256 of those bytes, when it was
/// first received, and the flags it was accepted with (upload spec §5 step 5).
public struct HubRecord: Sendable, Equatable {
    public var recordID: String
    public var deviceID: String
    public var seq: Int64
    public var kind: String
    public var body: String
    public var sha256: String
    public var receivedAt: String
    public var batchID: String
    public var flags: [String]

    init(_ r: Row) {
        recordID = r["record_id"]; deviceID = r["device_id"]; seq = r["seq"]; kind = r["kind"]; body = r["body"]
        sha256 = r["sha256"]; receivedAt = r["received_at"]; batchID = r["batch_id"]
        flags = HubDatabase.flags(r["flags"])
    }
}

/// A record the hub refused, kept for the audit (and for tests): every refusal, a `conflict`
/// or a repeated answer included.
public struct HubRejection: Sendable, Equatable {
    public var recordID: String?
    public var deviceID: String
    public var reason: String
    public var body: String
    public var receivedAt: String
}

/// The first answer the hub gave a `record_id` (upload spec §5 step 2): what it answers again.
public struct HubAnswer: Sendable, Equatable {
    public enum Status: String, Sendable { case accepted, rejected }
    public var recordID: String
    public var deviceID: String
    public var seq: Int64
    public var status: Status
    public var reason: String?
    public var answeredAt: String
}

public enum HubDatabaseError: Error, CustomStringConvertible {
    case versionOneFile(String)
    /// A check let through what it should have refused (a bug): the batch's transaction is rolled back.
    case inconsistent(String)
    public var description: String {
        switch self {
        case .inconsistent(let why): return "hub inconsistency: \(why)"
        case .versionOneFile(let p): return "\(p) is a version 1 hub database; start version 2 with a new file"
        }
    }
}

/// The hub's SQLite file (GRDB, WAL, `synchronous = FULL`): the first answer to every
/// `record_id`, the accepted records (never edited), and an audit of every refusal; one write
/// transaction per batch, every check of upload spec §5 that needs the store made inside it.
public final class HubDatabase: Sendable {
    public let pool: DatabasePool
    /// The SQLite file.
    public let path: String

    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        config.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: config)
        let versionOne = try pool.read { db in try db.tableExists("hub_record") && !db.tableExists("hub_answer") }
        if versionOne { throw HubDatabaseError.versionOneFile(path) }
        var m = DatabaseMigrator()
        m.registerMigration("v2") { db in
            try db.execute(sql: """
            CREATE TABLE hub_answer (
                record_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER NOT NULL, sha256 TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')), reason TEXT, detail TEXT,
                flags TEXT NOT NULL DEFAULT '', answered_at TEXT NOT NULL, batch_id TEXT NOT NULL,
                CHECK ((status = 'rejected') = (reason IS NOT NULL)));
            CREATE INDEX hub_answer_device ON hub_answer(device_id, seq);
            CREATE TABLE hub_record (
                record_id TEXT PRIMARY KEY REFERENCES hub_answer(record_id), device_id TEXT NOT NULL, seq INTEGER NOT NULL,
                kind TEXT NOT NULL, body TEXT NOT NULL, sha256 TEXT NOT NULL, received_at TEXT NOT NULL, batch_id TEXT NOT NULL,
                flags TEXT NOT NULL DEFAULT '',
                institution TEXT, card_number TEXT, person_ref TEXT, program TEXT, period TEXT, bill_reference TEXT,
                card_sequence INTEGER, bill_fen INTEGER, patient_pays_fen INTEGER, subsidy_fen INTEGER,
                reverses TEXT, amount_fen INTEGER);
            CREATE INDEX hub_record_device ON hub_record(device_id, seq);
            CREATE INDEX hub_record_bill ON hub_record(bill_reference, institution) WHERE bill_reference IS NOT NULL;
            CREATE INDEX hub_record_card_write ON hub_record(card_number, card_sequence) WHERE card_sequence IS NOT NULL;
            CREATE UNIQUE INDEX hub_record_reverses ON hub_record(reverses) WHERE reverses IS NOT NULL;
            CREATE TRIGGER hub_answer_never_edited BEFORE UPDATE ON hub_answer
                BEGIN SELECT RAISE(ABORT, 'answers are never edited'); END;
            CREATE TRIGGER hub_answer_never_deleted BEFORE DELETE ON hub_answer
                BEGIN SELECT RAISE(ABORT, 'answers are never deleted'); END;
            CREATE TRIGGER hub_record_never_edited BEFORE UPDATE ON hub_record
                BEGIN SELECT RAISE(ABORT, 'settlement records are never edited'); END;
            CREATE TRIGGER hub_record_never_deleted BEFORE DELETE ON hub_record
                BEGIN SELECT RAISE(ABORT, 'settlement records are never deleted'); END;
            CREATE TABLE hub_rejection (
                id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT, device_id TEXT NOT NULL, reason TEXT NOT NULL,
                body TEXT NOT NULL, received_at TEXT NOT NULL, batch_id TEXT NOT NULL);
            CREATE TABLE hub_batch (
                id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT NOT NULL, device_id TEXT NOT NULL, sent_at TEXT NOT NULL,
                received_at TEXT NOT NULL, records INTEGER NOT NULL, accepted INTEGER NOT NULL, duplicates INTEGER NOT NULL,
                rejected INTEGER NOT NULL);
            """)
        }
        Self.registerSyncMigration(&m)
        Self.registerRosterMigration(&m)
        Self.registerCertificateMigration(&m)
        try m.migrate(pool)
    }

    public func record(_ recordID: String) throws -> HubRecord? {
        try pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM hub_record WHERE record_id = ?", arguments: [recordID]).map(HubRecord.init) }
    }

    public func records(deviceID: String? = nil) throws -> [HubRecord] {
        try pool.read { db in
            if let deviceID {
                return try Row.fetchAll(db, sql: "SELECT * FROM hub_record WHERE device_id = ? ORDER BY seq", arguments: [deviceID]).map(HubRecord.init)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM hub_record ORDER BY device_id, seq").map(HubRecord.init)
        }
    }

    public func recordCount(deviceID: String? = nil) throws -> Int {
        try pool.read { db in
            if let deviceID {
                return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM hub_record WHERE device_id = ?", arguments: [deviceID]) ?? 0
            }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM hub_record") ?? 0
        }
    }

    public func rejections() throws -> [HubRejection] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM hub_rejection ORDER BY id").map {
                HubRejection(recordID: $0["record_id"], deviceID: $0["device_id"], reason: $0["reason"], body: $0["body"], receivedAt: $0["received_at"])
            }
        }
    }

    /// The first answer given to `recordID`, if any.
    public func answer(_ recordID: String) throws -> HubAnswer? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM hub_answer WHERE record_id = ?", arguments: [recordID]).map {
                HubAnswer(recordID: $0["record_id"], deviceID: $0["device_id"], seq: $0["seq"],
                          status: HubAnswer.Status(rawValue: $0["status"]) ?? .rejected, reason: $0["reason"], answeredAt: $0["answered_at"])
            }
        }
    }

    /// The highest `seq` answered for a device (accepted or rejected), 0 before the first.
    public func lastAnsweredSeq(deviceID: String) throws -> Int64 {
        try pool.read { db in try Self.lastAnsweredSeq(db, deviceID: deviceID) }
    }

    /// Batches received (whatever their answer): for tests and the operator.
    public func batchCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM hub_batch") ?? 0 }
    }

    static func lastAnsweredSeq(_ db: Database, deviceID: String) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM hub_answer WHERE device_id = ?", arguments: [deviceID]) ?? 0
    }

    static func flags(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map(String.init)
    }

    // MARK: storing a batch (upload spec §5)

    /// Answers and stores a batch whose sender is checked (§5 step 1: a registered, active
    /// device signed it, and every `record_id` names it), in one transaction, record by record
    /// in batch order: step 2 idempotence, step 3 order, then structure and step 4 content
    /// (the first failing check's reason), and step 5 flags. `received_at` is read from
    /// `now` inside the transaction.
    func store(batchID: String, deviceID: String, device: Roster.Device, roster: Roster, sentAt: String, records: [IncomingRecord],
               now: @escaping @Sendable () -> Date, format: @escaping @Sendable (Date) -> String) async throws -> [RecordResult] {
        // The pure checks outside the writer's lock.
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
        // The cards' acknowledgements (Ed25519, the costly part) verified up front, on every core.
        var ackChecks = [Refusal?](repeating: nil, count: records.count)
        let subsidyFields = subsidies
        ackChecks.withUnsafeMutableBufferPointer { out in
            let out = UncheckedBuffer(out)
            DispatchQueue.concurrentPerform(iterations: records.count) { i in
                guard let s = subsidyFields[i] else { return }
                out.buffer[i] = RecordRules.cardAck(s, cardKey: roster.cards[s.cardNumber]?.publicKey)
            }
        }
        let batchBills = bills
        let cardAcks = ackChecks
        return try await pool.write { db in
            let instant = now()
            let receivedAt = format(instant)
            let checker = Checker(db: db, deviceID: deviceID, device: device, roster: roster, batchBills: batchBills)
            let findAnswer = try db.cachedStatement(sql: "SELECT sha256, status, reason, detail, flags, answered_at FROM hub_answer WHERE record_id = ?")
            let insertAnswer = try db.cachedStatement(sql: """
                INSERT INTO hub_answer (record_id, device_id, seq, sha256, status, reason, detail, flags, answered_at, batch_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let insertRecord = try db.cachedStatement(sql: """
                INSERT INTO hub_record (record_id, device_id, seq, kind, body, sha256, received_at, batch_id, flags, institution, card_number,
                    person_ref, program, period, bill_reference, card_sequence, bill_fen, patient_pays_fen, subsidy_fen, reverses, amount_fen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let logRejection = try db.cachedStatement(sql: """
                INSERT INTO hub_rejection (record_id, device_id, reason, body, received_at, batch_id) VALUES (?, ?, ?, ?, ?, ?)
                """)
            var lastSeq = try Self.lastAnsweredSeq(db, deviceID: deviceID)
            var results: [RecordResult] = []
            results.reserveCapacity(records.count)
            var counts = (accepted: 0, duplicates: 0, rejected: 0)
            for (index, r) in records.enumerated() {
                let text = String(decoding: r.bytes, as: UTF8.self)
                // Step 2: a record_id answered before gets its first answer again, or `conflict`.
                if let first = try Row.fetchOne(findAnswer, arguments: [r.recordID]) {
                    if first["sha256"] as String == r.sha256 {
                        if first["status"] as String == "accepted" {
                            results.append(RecordResult(recordID: r.recordID, status: .duplicate(receivedAt: first["answered_at"],
                                                                                                  flags: Self.flags(first["flags"]))))
                            counts.duplicates += 1
                        } else {
                            let reason: String = first["reason"]
                            try logRejection.execute(arguments: [r.recordID, deviceID, reason, text, receivedAt, batchID])
                            results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: reason, detail: first["detail"])))
                            counts.rejected += 1
                        }
                    } else {
                        try logRejection.execute(arguments: [r.recordID, deviceID, "conflict", text, receivedAt, batchID])
                        results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: "conflict",
                                                                                            detail: "record_id answered before, with other content")))
                        counts.rejected += 1
                    }
                    continue
                }
                // Step 3: order; then the record's structure and step 4, its content.
                var refusal: Refusal?
                if r.seq != lastSeq + 1 {
                    refusal = Refusal("seq_gap", "expected seq \(lastSeq + 1), got \(r.seq)")
                } else if let broken = r.structureRefusal {
                    refusal = broken
                } else {
                    refusal = try checker.content(r, subsidy: subsidyFields[index], cardAck: cardAcks[index])
                }
                lastSeq = max(lastSeq, r.seq)
                if let refusal {
                    try insertAnswer.execute(arguments: [r.recordID, deviceID, r.seq, r.sha256, "rejected", refusal.reason, refusal.detail, "",
                                                         receivedAt, batchID])
                    try logRejection.execute(arguments: [r.recordID, deviceID, refusal.reason, text, receivedAt, batchID])
                    results.append(RecordResult(recordID: r.recordID, status: .rejected(reason: refusal.reason, detail: refusal.detail)))
                    counts.rejected += 1
                    continue
                }
                // Step 5: flags, not refusals.
                let flags = checker.flags(r, subsidy: subsidyFields[index], now: instant)
                let flagText = flags.joined(separator: ",")
                try insertAnswer.execute(arguments: [r.recordID, deviceID, r.seq, r.sha256, "accepted", nil, nil, flagText, receivedAt, batchID])
                guard let record = r.record else { throw HubDatabaseError.inconsistent("record \(r.recordID) passed its checks without being read") }
                let s = record.medicalSubsidy, l = record.legalAidApplication, v = record.subsidyReversal
                try insertRecord.execute(arguments: [
                    r.recordID, deviceID, r.seq, record.kind.rawValue, text, r.sha256, receivedAt, batchID, flagText,
                    s?.institution, s?.cardNumber ?? l?.cardNumber ?? record.alert?.cardNumber, s?.personRef ?? l?.personRef,
                    s?.program ?? l?.program, s?.period,
                    s?.billReference, s?.cardSequence, s?.billFen, s?.patientPaysFen, s?.subsidyFen,
                    v?.reverses, v?.amountFen,
                ])
                results.append(RecordResult(recordID: r.recordID, status: .accepted(receivedAt: receivedAt, flags: flags)))
                counts.accepted += 1
            }
            try db.execute(sql: """
                INSERT INTO hub_batch (batch_id, device_id, sent_at, received_at, records, accepted, duplicates, rejected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [batchID, deviceID, sentAt, receivedAt, records.count, counts.accepted, counts.duplicates, counts.rejected])
            return results
        }
    }

    /// Upload spec §5 step 4 and 5 for one record, against the roster and what is stored
    /// (this batch's earlier records included: they are stored as the loop goes).
    struct Checker {
        let db: Database
        let deviceID: String
        let device: Roster.Device
        let roster: Roster
        let batchBills: [BillKey: [BillPart]]

        /// The first failing content check's refusal, in the spec's order, or nil.
        /// `cardAck`: `RecordRules.cardAck` of a `medical_subsidy`, verified beforehand.
        func content(_ r: IncomingRecord, subsidy: SubsidyFields?, cardAck: Refusal?) throws -> Refusal? {
            guard let record = r.record else { return r.structureRefusal ?? Refusal("bad_fields") }
            switch record.content {
            case .medicalSubsidy:
                guard let s = subsidy else { return Refusal("bad_fields") }
                if let bad = RecordRules.amounts(s, bill: try bill(s)) { return bad }
                guard let program = roster.programs[s.program], program.cardType == "medical" else {
                    return Refusal("unknown_program", "\(s.program) is not a medical program of the roster")
                }
                guard roster.cards[s.cardNumber]?.personRef == s.personRef else {
                    return Refusal("unknown_card", "card \(s.cardNumber) is not in the roster under person_ref \(s.personRef)")
                }
                if let bad = cardAck { return bad }
                // One card write acknowledges one bill: an acknowledgement replayed for another bill is no card in the reader.
                if let used = try String.fetchOne(db.cachedStatement(sql: """
                    SELECT record_id FROM hub_record WHERE card_number = ? AND card_sequence = ? AND kind = 'medical_subsidy'
                        AND NOT (device_id = ? AND bill_reference = ?) LIMIT 1
                    """), arguments: [s.cardNumber, s.cardSequence, deviceID, s.billReference]) {
                    return Refusal("bad_card_ack", "the write \(s.cardSequence) of card \(s.cardNumber) was acknowledged for another bill (\(used))")
                }
                guard let institution = device.institution, institution == s.institution else {
                    return Refusal("wrong_institution", "\(s.institution) is not the institution of \(deviceID)")
                }
                if let other = try String.fetchOne(db.cachedStatement(sql: """
                    SELECT device_id FROM hub_record WHERE bill_reference = ? AND institution = ? AND device_id != ? LIMIT 1
                    """), arguments: [s.billReference, institution, deviceID]) {
                    return Refusal("duplicate_bill", "bill \(s.billReference) of \(institution) was already used by \(other)")
                }
                return nil
            case .subsidyReversal(let reversal):
                let reverses = reversal.reverses
                let amount = reversal.amountFen
                if amount < 0 { return Refusal("bad_amounts", "amount_fen is negative") }
                guard RecordRules.sequence(recordID: reverses, deviceID: deviceID) != nil else {
                    return Refusal("bad_reversal", "\(reverses) is not a record of \(deviceID)")
                }
                guard let target = try Row.fetchOne(db.cachedStatement(sql: "SELECT kind, subsidy_fen FROM hub_record WHERE record_id = ?"), arguments: [reverses]),
                      target["kind"] as String == "medical_subsidy" else {
                    return Refusal("bad_reversal", "no medical_subsidy \(reverses) is stored")
                }
                if let by = try String.fetchOne(db.cachedStatement(sql: "SELECT record_id FROM hub_record WHERE reverses = ?"), arguments: [reverses]) {
                    return Refusal("bad_reversal", "\(reverses) was already reversed by \(by)")
                }
                let subsidy: Int64 = target["subsidy_fen"]
                guard amount == subsidy else {
                    return Refusal("bad_reversal", "amount_fen \(amount) is not the subsidy_fen \(subsidy) of \(reverses)")
                }
                return nil
            case .legalAidApplication(let application):
                let code = application.program
                guard let program = roster.programs[code], program.cardType == "legal_aid" else {
                    return Refusal("unknown_program", "\(code) is not a legal-aid program of the roster")
                }
                let number = application.cardNumber, ref = application.personRef
                guard let card = roster.cards[number], card.personRef == ref else {
                    return Refusal("unknown_card", "card \(number) is not in the roster under person_ref \(ref)")
                }
                return nil
            case .alert:
                return nil
            }
        }

        /// The parts of `s`'s bill: those stored (this device's, the same card write) and
        /// those in this batch.
        func bill(_ s: SubsidyFields) throws -> [BillPart] {
            var parts = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT record_id, bill_fen, patient_pays_fen, subsidy_fen FROM hub_record
                WHERE bill_reference = ? AND device_id = ? AND card_number = ? AND card_sequence = ? AND kind = 'medical_subsidy'
                """), arguments: [s.billReference, deviceID, s.cardNumber, s.cardSequence]).map {
                BillPart(recordID: $0["record_id"], billFen: $0["bill_fen"], patientPaysFen: $0["patient_pays_fen"], subsidyFen: $0["subsidy_fen"])
            }
            let stored = Set(parts.map(\.recordID))
            parts += (batchBills[s.billKey] ?? []).filter { !stored.contains($0.recordID) }
            return parts
        }

        func flags(_ r: IncomingRecord, subsidy: SubsidyFields?, now: Date) -> [String] {
            var flags: [String] = []
            if let s = subsidy, let limit = roster.programs[s.program]?.limitFen, s.usedAfterFen > limit { flags.append("over_limit") }
            if RecordRules.timeSuspect(createdAt: r.record?.createdAt ?? "", now: now) { flags.append("time_suspect") }
            return flags
        }
    }
}

/// A buffer written at distinct indices by `concurrentPerform`'s iterations.
///
/// `@unchecked Sendable`, and why that is sound: it is used only inside
/// `withUnsafeMutableBufferPointer`, by `DispatchQueue.concurrentPerform`, which returns after
/// every iteration has finished (so the pointer never outlives the array's borrow); iteration
/// `i` writes element `i` only and nothing reads the buffer until all have finished.
struct UncheckedBuffer<T>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<T>
    init(_ buffer: UnsafeMutableBufferPointer<T>) { self.buffer = buffer }
}

/// What the hub answers for one record.
struct RecordResult: Sendable, Equatable {
    enum Status: Sendable, Equatable {
        case accepted(receivedAt: String, flags: [String])
        case duplicate(receivedAt: String, flags: [String])
        case rejected(reason: String, detail: String?)
    }
    var recordID: String?
    var status: Status
}

/// Lower-case hex of a digest.
func hexDigest<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(64)
    for byte in digest {
        out.append(hex[Int(byte >> 4)])
        out.append(hex[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
