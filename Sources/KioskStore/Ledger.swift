import KioskProtocol
import Foundation
import GRDB
import GRDBSQLite

/// Who this device is, as the ledger needs it.
public struct DeviceContext: Sendable, Equatable {
    /// The device's id (`record_id` = `<device_id>-<seq>`).
    public var deviceID: String
    /// The institution the device serves, written into its subsidy records.
    public var institution: String
    /// A device context as given.
    public init(deviceID: String, institution: String) { self.deviceID = deviceID; self.institution = institution }
}

/// The store's side of a card presentation (see `KioskStore.presentation`).
public struct Presentation: Sendable {
    /// This device's own `device` entry in the installed snapshot: its status (`active` or
    /// `retired`), nil when the snapshot has none (or there is no snapshot).
    public var ownDeviceStatus: String?
    /// Whether a snapshot is installed.
    public var snapshotInstalled: Bool
    /// The clock floor (sync spec §6).
    public var clockFloor: ClockFloor
    /// Device keys the snapshot knows, base64 by device id.
    public var deviceKeys: [String: String]
    /// The card's pending deductions, oldest first.
    public var pending: [Deduction]
    /// The snapshot's view of the card (nil without a snapshot).
    public var view: SnapshotView?
}

/// A deduction's state (card spec §6): pending until the card decides, then exactly once
/// committed or voided.
public enum DeductionState: String, Sendable, Codable, CaseIterable {
    case pending, committed, voided
}

/// One deduction of the ledger (card spec §6): the card write it stands for and the bill's
/// allocations, pending until the card decides.
public struct Deduction: Sendable, Equatable {
    /// The ledger's id of the deduction.
    public var id: Int64
    /// Pending, committed or voided.
    public var state: DeductionState
    /// The card written.
    public var cardNumber: String
    /// The card's person (`DF2A`).
    public var personRef: String
    /// The period (calendar year, China Standard Time) the write counts in.
    public var period: String
    /// The EF.USAGE sequence (`DF43`) the write carries.
    public var cardSequence: UInt32
    /// The exact EF.USAGE object (`72`) written; a card holding it when presented again took the write.
    public var usageObject: [UInt8]
    /// The card's GET CHALLENGE answer this write carries (`DF48`).
    public var cardChallenge: [UInt8]
    /// The card's acknowledgement (card spec §5.4), once committed.
    public var cardAck: [UInt8]?
    /// The hospital system's reference of the bill.
    public var billReference: String
    /// The bill, in fen.
    public var billFen: Fen
    /// The subsidy per program, in priority order.
    public var allocations: [Allocation]
    /// The snapshot the decision was made on.
    public var snapshotID: String
    /// When the deduction began, RFC 3339 UTC.
    public var createdAt: String
    /// How it was committed or voided, in words; nil while pending.
    public var resolution: String?

    /// The columns `init(_:)` reads, by position (issue 24 item 4: a lookup by name compared
    /// every column's name, 30,000 instructions a commit); `institution` last, for the commit.
    static let select = """
        SELECT id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge, card_ack,
               bill_reference, bill_fen, allocations, snapshot_id, created_at, resolution, institution FROM deduction
        """

    /// A row of `Deduction.select`.
    init(_ r: StoreRow) throws {
        guard let st = DeductionState(rawValue: try r[1] as String) else {
            throw StoreError(kind: .corrupt, message: "a deduction's state cannot be read: the ledger is damaged")
        }
        let sequence: Int64 = try r[5]
        guard let cardSequence = UInt32(exactly: sequence) else {
            throw StoreError(kind: .corrupt, message: "a deduction's card sequence \(sequence) cannot be a card's: the ledger is damaged")
        }
        id = try r[0]; state = st; cardNumber = try r[2]; personRef = try r[3]; period = try r[4]
        self.cardSequence = cardSequence; usageObject = [UInt8](try r[6] as Data)
        cardChallenge = [UInt8](try r[7] as Data); cardAck = (try r[8] as Data?).map { [UInt8]($0) }
        billReference = try r[9]; billFen = try r[10]
        allocations = try Deduction.decodeAllocations(try r[11])
        snapshotID = try r[12]; createdAt = try r[13]; resolution = try r[14]
    }

    /// The allocations column, decoded with errors: an unreadable one never counts as
    /// "nothing allocated" (that would undercount L and grant over the limit).
    /// Read with the strict scanner (issue 24 item 4: `JSONDecoder` took 40,000 instructions
    /// a commit): exactly the four members `Allocation` encodes, each once, of their types.
    static func decodeAllocations(_ text: String?) throws -> [Allocation] {
        let damaged = StoreError(kind: .corrupt, message: "a deduction's allocations cannot be read: the ledger is damaged; no subsidy until a technician looks")
        guard let text, let objects = StrictJSON.flatObjects(Array(text.utf8)), !objects.isEmpty else { throw damaged }
        return try objects.map { members in
            var program: String?, amounts: [String: Fen] = [:]
            for (key, value) in members {
                switch (key, value) {
                case ("program", .string(let p)?) where program == nil: program = p
                case ("subsidyFen", .integer(let v)?), ("usedBeforeFen", .integer(let v)?), ("usedAfterFen", .integer(let v)?):
                    guard amounts.updateValue(v, forKey: key) == nil else { throw damaged }
                default: throw damaged
                }
            }
            guard let program, let subsidy = amounts["subsidyFen"], let before = amounts["usedBeforeFen"], let after = amounts["usedAfterFen"] else {
                throw damaged
            }
            return Allocation(program: program, subsidyFen: subsidy, usedBeforeFen: before, usedAfterFen: after)
        }
    }
}

/// Why the ledger refused a deduction, a reversal or a lookup.
public enum LedgerError: Error, Equatable, CustomStringConvertible {
    /// The device is not provisioned.
    case notProvisioned
    /// No snapshot is installed.
    case noSnapshot
    /// Between decision and write the figures moved (another deduction): decide again.
    case staleDecision(program: String)
    /// The write path's own check: this would pass the program's limit.
    case overLimit(program: String)
    /// The bill (its reference) already has a deduction that is not voided.
    case duplicateBill(String)
    /// The card has a pending deduction: present it again to resolve that first (card spec §6 step 7).
    case pendingExists(cardNumber: String)
    /// No record with this id on this device.
    case unknownRecord(String)
    /// The record is not a `medical_subsidy`.
    case notReversible(String)
    /// The record already has its reversal.
    case alreadyReversed(String)
    /// No deduction with this id.
    case noSuchDeduction(Int64)

    /// The refusal in one line.
    public var description: String {
        switch self {
        case .notProvisioned: return "the device is not provisioned"
        case .noSnapshot: return "no snapshot installed"
        case .staleDecision(let p): return "usage of \(p) changed since the decision; decide again"
        case .overLimit(let p): return "refused by the ledger: \(p) would pass its limit"
        case .duplicateBill(let b): return "bill \(b) already has a subsidy"
        case .pendingExists(let c): return "card \(c) has an unresolved deduction; present the card again to resolve it"
        case .unknownRecord(let r): return "no record \(r) on this device"
        case .notReversible(let r): return "record \(r) is not a medical subsidy"
        case .alreadyReversed(let r): return "record \(r) is already reversed"
        case .noSuchDeduction(let id): return "no deduction \(id)"
        }
    }
}

extension KioskStore {
    // MARK: snapshot lookups

    /// The snapshot's view of a card for `period`, with S and L per program; nil without a snapshot.
    public func view(cardNumber: String, period: String) throws -> SnapshotView? {
        try read { db in try KioskStore.view(db, cardNumber: cardNumber, period: period) }
    }

    static func view(_ db: Database, cardNumber: String, period: String) throws -> SnapshotView? {
        guard let meta = try InstalledBrief.read(db) else { return nil }
        let expires = Timestamp.date(meta.expiresAt) ?? .distantPast
        // Columns named and read by position (a lookup by name compares every column's name).
        let card = try KioskStore.row(db, "SELECT card_number, person_ref, status FROM card WHERE card_number = ?", [cardNumber]) {
            CardEntry(cardNumber: try $0[0], personRef: try $0[1], status: CardStatus(rawValue: try $0[2]) ?? .revoked)
        }
        guard let card else { return SnapshotView(snapshotID: meta.snapshotID, expiresAt: expires, card: nil, person: nil, programs: []) }
        let person = try KioskStore.row(db, "SELECT person_ref, status, status_reason, programs FROM person WHERE person_ref = ?", [card.personRef]) {
            Person(personRef: try $0[0], status: PersonStatus(rawValue: try $0[1]) ?? .revoked, statusReason: try $0[2],
                   programs: KioskStore.programCodes(try $0[3]))
        }
        var programs: [Program] = []
        var usage: [String: UsageFigures] = [:]
        let settled = Timestamp.date(meta.settledThrough) ?? .distantPast   // once per view
        if let person {
            for code in person.programs {
                guard let p = try KioskStore.program(db, code) else { continue }
                programs.append(p)
                if p.cardType == .medical {
                    usage[p.code] = try figures(db, personRef: person.personRef, program: p.code, period: period, settled: settled)
                }
            }
        }
        return SnapshotView(snapshotID: meta.snapshotID, expiresAt: expires, card: card, person: person, programs: programs, usage: usage)
    }

    /// The codes of `person.programs`, split at the unit separator (an ASCII byte, so never
    /// inside a UTF-8 sequence); empty pieces dropped.
    static func programCodes(_ column: String) -> [String] {
        column.utf8.split(separator: SnapshotLoader.separator.utf8.first!).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The installed snapshot's program `code`, decoded once per text (`ProgramCache`); nil
    /// when the snapshot has none, or its text cannot be read.
    static func program(_ db: Database, _ code: String) throws -> Program? {
        try KioskStore.row(db, "SELECT json FROM program WHERE code = ?", [code]) { try $0[0] as String }.flatMap { ProgramCache.decode(code: code, json: $0) }
    }

    /// S and L (snapshot spec §5). L counts this device's subsidies less reversals that the
    /// snapshot does not count yet (not acknowledged, or received after `settled_through`),
    /// and, to be safe, deductions still pending. `settled` is the snapshot's `settled_through`,
    /// parsed once by the caller.
    static func figures(_ db: Database, personRef: String, program: String, period: String, settled: Date) throws -> UsageFigures {
        let s = try KioskStore.row(db, "SELECT used_fen FROM usage WHERE person_ref = ? AND program = ? AND period = ?",
                                   [personRef, program, period]) { try $0[0] as Int64 } ?? 0
        // Read by position: the columns are named in the statement.
        let amounts: [Fen?] = try KioskStore.rows(db, """
            SELECT amount_fen, status, received_at FROM record
            WHERE person_ref = ? AND program = ? AND period = ? AND kind IN ('medical_subsidy', 'subsidy_reversal')
            """, [personRef, program, period]) { r in
            let status: String = try r[1]
            if status == "accepted", let received = (try r[2] as String?).flatMap(Timestamp.date), received <= settled { return nil }
            return try r[0] as Fen
        }
        var l: Fen = 0
        for amount in amounts { if let amount { l = try checkedSum(l, amount) } }
        let pending: [String?] = try KioskStore.rows(db, "SELECT allocations FROM deduction WHERE state = 'pending' AND person_ref = ? AND period = ?",
                                                     [personRef, period]) { try $0[0] }
        for text in pending {
            for a in try Deduction.decodeAllocations(text) where a.program == program { l = try checkedSum(l, a.subsidyFen) }
        }
        return UsageFigures(snapshotFen: s, localFen: l)
    }

    /// A sum of money that cannot trap (issue 21): an overflow is a damaged store, no subsidy.
    static func checkedSum(_ a: Fen, _ b: Fen) throws -> Fen {
        let (sum, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw StoreError(kind: .corrupt, message: "the usage figures overflow: the store's amounts are damaged") }
        return sum
    }

    /// The device keys the snapshot knows (for EF.USAGE signatures), active or retired.
    public func deviceKeys() throws -> [String: String] {
        try pool.read { db in try KioskStore.deviceKeys(db) }
    }

    /// A device's status in the installed snapshot (`active`, `retired`), nil when it holds none.
    public func deviceStatus(_ deviceID: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db.cachedStatement(sql: "SELECT status FROM device WHERE device_id = ?"), arguments: [deviceID]) }
    }

    static func deviceKeys(_ db: Database) throws -> [String: String] {
        Dictionary(uniqueKeysWithValues: try Row.fetchAll(db.cachedStatement(sql: "SELECT device_id, public_key FROM device")).map {
            ($0["device_id"] as String, $0["public_key"] as String)
        })
    }

    /// What a card's presentation needs from the store, read in one transaction (one
    /// consistent state, one round through the reader pool): this device's own entry, the
    /// clock floor, the device keys, the card's pending deductions and the snapshot's view of the card.
    public func presentation(cardNumber: String, period: String, deviceID: String) throws -> Presentation {
        try read { db in
            Presentation(ownDeviceStatus: try String.fetchOne(db.cachedStatement(sql: "SELECT status FROM device WHERE device_id = ?"), arguments: [deviceID]),
                         snapshotInstalled: try SnapshotLoader.installed(db) != nil,
                         clockFloor: try KioskStore.clockFloor(db),
                         deviceKeys: try KioskStore.deviceKeys(db),
                         pending: try KioskStore.pendingDeductions(db, cardNumber: cardNumber),
                         view: try KioskStore.view(db, cardNumber: cardNumber, period: period))
        }
    }

    // MARK: deductions (card spec §6)

    /// Step 3: the intended deduction, durable as *pending* before the card is written.
    /// The limit is enforced here, in the one write path, inside the transaction: the
    /// figures are read again and must be what the decision saw.
    public func beginDeduction(device: DeviceContext, cardNumber: String, personRef: String, period: String, cardFen: [String: Fen],
                               decision: SubsidyDecision, billReference: String, cardSequence: UInt32, usageObject: [UInt8],
                               cardChallenge: [UInt8], now: Date) throws -> Int64 {
        precondition(cardChallenge.count == 16, "a card challenge is 16 bytes")
        precondition(decision.isGranted && !decision.allocations.isEmpty, "only granted decisions are deducted")
        return try write { db in
            guard let meta = try InstalledBrief.read(db) else { throw LedgerError.noSnapshot }
            let settled = Timestamp.date(meta.settledThrough) ?? .distantPast
            if try KioskStore.row(db, "SELECT 1 FROM deduction WHERE state = 'pending' AND card_number = ? LIMIT 1", [cardNumber], { _ in true }) != nil {
                throw LedgerError.pendingExists(cardNumber: cardNumber)
            }
            if try KioskStore.row(db, "SELECT 1 FROM deduction WHERE voided = 0 AND bill_reference = ? LIMIT 1", [billReference], { _ in true }) != nil {
                throw LedgerError.duplicateBill(billReference)
            }
            for a in decision.allocations {
                guard let program = try KioskStore.program(db, a.program), let limit = program.limitFen else {
                    throw LedgerError.staleDecision(program: a.program)
                }
                var f = try KioskStore.figures(db, personRef: personRef, program: a.program, period: period, settled: settled)
                f.cardFen = cardFen[a.program] ?? 0
                guard f.used == a.usedBeforeFen else { throw LedgerError.staleDecision(program: a.program) }
                guard a.subsidyFen > 0, a.usedAfterFen == a.usedBeforeFen + a.subsidyFen, a.usedAfterFen <= limit else {
                    throw LedgerError.overLimit(program: a.program)
                }
            }
            let allocations = try CompactJSON.string(decision.allocations)
            try KioskStore.run(db, """
                INSERT INTO deduction (device_id, state, card_number, person_ref, period, card_sequence, usage_object, card_challenge,
                    bill_reference, bill_fen, allocations, snapshot_id, institution, created_at)
                VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [device.deviceID, cardNumber, personRef, period, Int64(cardSequence), Data(usageObject), Data(cardChallenge), billReference,
                      decision.billFen, allocations, meta.snapshotID, device.institution, Timestamp.string(now)])
            return db.lastInsertedRowID
        }
    }

    /// Step 6: committed with the card's acknowledgement, and its settlement records (one per
    /// program) queued, in one transaction. `cardSequence` and `cardChallenge` are those the
    /// acknowledgement covers: the write's own, or (a torn write found on the card later) those
    /// of the confirming write that fetched an acknowledgement.
    @discardableResult
    ///
    /// `ack` nil: the card holds the record (found on it when presented again) but gave no
    /// acknowledgement for it; the records then carry an empty `card_ack`, which the hub
    /// refuses (`bad_card_ack`) and raises to its operators: a subsidy without the card's
    /// word is for people to look at, while the kiosk still counts it in L.
    public func commitDeduction(_ id: Int64, device: DeviceContext, ack: [UInt8]?, cardSequence: UInt32? = nil, cardChallenge: [UInt8]? = nil,
                                cardWrittenAt: Date? = nil, now: Date, resolution: String = "card written") throws -> [StoredRecord] {
        precondition(ack == nil || ack!.count == 64, "a card acknowledgement is 64 bytes")
        return try write { db in
            guard let (d, institution) = try KioskStore.row(db, "\(Deduction.select) WHERE id = ?", [id], { (try Deduction($0), try $0[15] as String) }) else {
                throw LedgerError.noSuchDeduction(id)
            }
            guard d.state == .pending else {
                // Resolved before (exactly once): hand back what it made.
                return try KioskStore.rows(db, "\(StoredRecord.select) WHERE deduction_id = ? ORDER BY seq", [id], StoredRecord.init)
            }
            // Sync spec §6: a card write's DF45 raises the clock floor.
            if let cardWrittenAt { try KioskStore.raiseClockFloor(db, to: cardWrittenAt) }
            let ackedSequence = cardSequence ?? d.cardSequence
            let ackedChallenge = cardChallenge ?? d.cardChallenge
            try KioskStore.run(db, "UPDATE deduction SET state = 'committed', resolved_at = ?, resolution = ?, card_ack = ? WHERE id = ?",
                               [Timestamp.string(now), resolution, ack.map { Data($0) }, id])
            let total = d.allocations.reduce(0) { $0 + $1.subsidyFen }
            var out: [StoredRecord] = []
            for a in d.allocations {
                let subsidy = SettlementRecord.MedicalSubsidy(
                    cardNumber: d.cardNumber, personRef: d.personRef, program: a.program, period: d.period,
                    billReference: d.billReference, billFen: d.billFen, subsidyFen: a.subsidyFen,
                    patientPaysFen: d.billFen - total, usedBeforeFen: a.usedBeforeFen, usedAfterFen: a.usedAfterFen,
                    cardSequence: Int64(ackedSequence), cardChallenge: Hex.encode(ackedChallenge),
                    cardAck: ack.map { Data($0).base64EncodedString() } ?? "", institution: institution)
                out.append(try KioskStore.appendRecord(db, device: device, now: now, snapshotID: d.snapshotID, content: .medicalSubsidy(subsidy),
                    index: RecordIndex(deductionID: id, personRef: d.personRef, program: a.program, period: d.period, amountFen: a.subsidyFen)))
            }
            return out
        }
    }

    /// Step 7, the card did not take the write: voided, nothing recorded for settlement.
    public func voidDeduction(_ id: Int64, now: Date, resolution: String) throws {
        try write { db in
            try db.cachedStatement(sql: "UPDATE deduction SET state = 'voided', voided = 1, resolved_at = ?, resolution = ? WHERE id = ? AND state = 'pending'").execute(
                           arguments: [Timestamp.string(now), resolution, id])
        }
    }

    /// How many records are in `status`, counted by SQL (the health report; no row is loaded).
    public func recordCount(status: RecordStatus) throws -> Int {
        try pool.read { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM record WHERE status = ?"), arguments: [status.rawValue]) ?? 0
        }
    }

    /// How many deductions are pending, counted by SQL.
    public func pendingDeductionCount() throws -> Int {
        try pool.read { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM deduction WHERE state = 'pending'")) ?? 0
        }
    }

    /// The pending deductions (of one card when `cardNumber` is given), oldest first.
    public func pendingDeductions(cardNumber: String? = nil) throws -> [Deduction] {
        try pool.read { db in
            if let cardNumber { return try KioskStore.pendingDeductions(db, cardNumber: cardNumber) }
            return try KioskStore.rows(db, "\(Deduction.select) WHERE state = 'pending' ORDER BY id") { try Deduction($0) }
        }
    }

    static func pendingDeductions(_ db: Database, cardNumber: String) throws -> [Deduction] {
        try KioskStore.rows(db, "\(Deduction.select) WHERE state = 'pending' AND card_number = ? ORDER BY id", [cardNumber]) { try Deduction($0) }
    }

    /// The deduction of a bill that is not voided (pending or committed), if any.
    public func deduction(billReference: String) throws -> Deduction? {
        try pool.read { db in
            try KioskStore.row(db, "\(Deduction.select) WHERE bill_reference = ? AND voided = 0", [billReference]) { try Deduction($0) }
        }
    }

    /// The settlement records a committed deduction made, in `seq` order.
    public func records(deductionID: Int64) throws -> [StoredRecord] {
        try pool.read { db in
            try KioskStore.rows(db, "\(StoredRecord.select) WHERE deduction_id = ? ORDER BY seq", [deductionID], StoredRecord.init)
        }
    }

    /// The latest deductions, newest first, at most `limit`.
    public func deductions(limit: Int = 100) throws -> [Deduction] {
        try pool.read { db in try KioskStore.rows(db, "\(Deduction.select) ORDER BY id DESC LIMIT ?", [limit]) { try Deduction($0) } }
    }

    // MARK: settlement records (upload spec §1)

    struct RecordIndex {
        var deductionID: Int64? = nil
        var personRef: String? = nil
        var program: String? = nil
        var period: String? = nil
        var amountFen: Fen = 0
        var reverses: String? = nil
    }

    /// The next gapless `seq` of the device and the record, in the caller's transaction.
    static func appendRecord(_ db: Database, device: DeviceContext, now: Date, snapshotID: String?,
                             content: SettlementRecord.Content, index: RecordIndex, raisesFloor: Bool = true) throws -> StoredRecord {
        // Sync spec §6: a record's created_at raises the clock floor (never lowers it; a record
        // made while the clock reads before the floor leaves it where it is).
        if raisesFloor { try raiseClockFloor(db, to: now) }
        // Two statements, not one with RETURNING: SQLite gathers RETURNING's rows in a temporary
        // B-tree it creates and drops each time (issue 24 item 4: 90,000 instructions a record).
        try KioskStore.run(db, """
            INSERT INTO device_sequence (device_id, last_seq) VALUES (?, 1)
            ON CONFLICT(device_id) DO UPDATE SET last_seq = last_seq + 1
            """, [device.deviceID])
        guard let seq = try KioskStore.row(db, "SELECT last_seq FROM device_sequence WHERE device_id = ?", [device.deviceID], { try $0[0] as Int64 }) else {
            throw StoreError(kind: .corrupt, message: "the device's sequence cannot be read: the ledger is damaged")
        }
        let recordID = "\(device.deviceID)-\(seq)"
        let kind = content.kind.rawValue
        // Issue 21 item 6: a legal-aid contact phone is kept apart from the immutable record,
        // so it can go 30 days after the hub acknowledged it without touching the record.
        var stored = content, phone: String?
        if case .legalAidApplication(var a) = content, let p = a.contactPhone {
            phone = p
            a.contactPhone = ContactKeptApart.marker
            stored = .legalAidApplication(a)
        }
        let text = try SettlementRecord(recordID: recordID, seq: seq, createdAt: Timestamp.string(now), snapshotID: snapshotID,
                                        content: stored).json()
        try KioskStore.run(db, """
            INSERT INTO record (device_id, seq, record_id, kind, created_at, body, deduction_id, person_ref, program, period, amount_fen, reverses)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [device.deviceID, seq, recordID, kind, Timestamp.string(now), text, index.deductionID, index.personRef,
                  index.program, index.period, index.amountFen, index.reverses])
        if let phone { try KioskStore.run(db, "INSERT INTO legal_aid_contact (record_id, phone) VALUES (?, ?)", [recordID, phone]) }
        // What a read of the row would give (the phone joined back), without reading it.
        var body = text
        if let phone { body = ContactKeptApart.join(text, phone: phone) }
        return StoredRecord(seq: seq, recordID: recordID, kind: content.kind, createdAt: Timestamp.string(now), body: body, status: .queued,
                            receivedAt: nil, rejectReason: nil, amountFen: index.amountFen, program: index.program, deductionID: index.deductionID)
    }

    /// A reversal of a mistaken subsidy: its full amount, once (upload spec `subsidy_reversal`).
    public func reverse(recordID: String, reason: String, operator op: String, device: DeviceContext, now: Date) throws -> StoredRecord {
        try write { db in
            guard let r = try Row.fetchOne(db.cachedStatement(sql: "\(StoredRecord.select) WHERE record_id = ? AND device_id = ?"), arguments: [recordID, device.deviceID]) else {
                throw LedgerError.unknownRecord(recordID)
            }
            guard r["kind"] as String == "medical_subsidy" else { throw LedgerError.notReversible(recordID) }
            if try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM record WHERE reverses = ?)"), arguments: [recordID])! {
                throw LedgerError.alreadyReversed(recordID)
            }
            let amount: Fen = r["amount_fen"]
            let snapshotID = try SnapshotLoader.installed(db)?.header.snapshotID
            return try KioskStore.appendRecord(db, device: device, now: now, snapshotID: snapshotID,
                content: .subsidyReversal(.init(reverses: recordID, amountFen: amount, reason: reason, operator: op)), index: RecordIndex(personRef: r["person_ref"], program: r["program"], period: r["period"], amountFen: -amount, reverses: recordID))
        }
    }

    /// A legal-aid application record, with the card's consent (upload spec §1, amendment
    /// 2026-12-06). `createdAt` must be the string the consent's challenge was made over
    /// (`Timestamp.string(now)`); the record carries exactly it.
    ///
    /// - Parameter dailyLimit: at most this many applications per card per day (China
    ///   Standard Time), counted in the same transaction; over it nothing is recorded and
    ///   the result is nil.
    public func recordLegalAidApplication(device: DeviceContext, application: SettlementRecord.LegalAidApplication, now: Date,
                                          dailyLimit: Int? = nil) throws -> StoredRecord? {
        try write { db in
            if let dailyLimit {
                let (from, to) = Self.chinaDay(of: now)
                let filed = try Int.fetchOne(db, sql: """
                    SELECT count(*) FROM record WHERE kind = 'legal_aid_application' AND person_ref = ? AND created_at >= ? AND created_at < ?
                      AND json_extract(body, '$.card_number') = ?
                    """, arguments: [application.personRef, Timestamp.string(from), Timestamp.string(to), application.cardNumber]) ?? 0
                guard filed < dailyLimit else { return nil }
            }
            let snapshotID = try SnapshotLoader.installed(db)?.header.snapshotID
            return try KioskStore.appendRecord(db, device: device, now: now, snapshotID: snapshotID,
                                               content: .legalAidApplication(application),
                                               index: RecordIndex(personRef: application.personRef, program: application.program))
        }
    }

    /// The China Standard Time day (UTC+8) `now` falls in, as UTC instants [from, to).
    static func chinaDay(of now: Date) -> (Date, Date) {
        let shifted = now.timeIntervalSince1970 + 8 * 3600
        let start = (shifted / 86_400).rounded(.down) * 86_400 - 8 * 3600
        return (Date(timeIntervalSince1970: start), Date(timeIntervalSince1970: start + 86_400))
    }

    /// An `alert` record for the technician and the platform.
    @discardableResult
    public func recordAlert(device: DeviceContext, code: String, cardNumber: String?, detail: String, now: Date) throws -> StoredRecord {
        try write { db in
            let snapshotID = try SnapshotLoader.installed(db)?.header.snapshotID
            return try KioskStore.appendRecord(db, device: device, now: now, snapshotID: snapshotID,
                                               content: .alert(.init(code: code, cardNumber: cardNumber, detail: detail)), index: RecordIndex())
        }
    }

    /// Stored records in device and `seq` order, at most `limit`; only those in `status`
    /// (`queued`, `accepted`, `rejected`) when it is given.
    public func records(status: RecordStatus? = nil, limit: Int = 1000) throws -> [StoredRecord] {
        try pool.read { db in
            if let status {
                return try KioskStore.rows(db, "\(StoredRecord.select) WHERE status = ? ORDER BY device_id, seq LIMIT ?", [status.rawValue, limit], StoredRecord.init)
            }
            return try KioskStore.rows(db, "\(StoredRecord.select) ORDER BY device_id, seq LIMIT ?", [limit], StoredRecord.init)
        }
    }

    /// The record with this `record_id`, or nil.
    public func record(_ recordID: String) throws -> StoredRecord? {
        try pool.read { db in try KioskStore.row(db, "\(StoredRecord.select) WHERE record_id = ?", [recordID], StoredRecord.init) }
    }

    /// The hub's answer for a record (upload spec §3): accepted/duplicate keep `received_at`.
    public func markDelivered(recordID: String, status: RecordStatus, receivedAt: String?, reason: String?) throws {
        precondition(status != .queued, "a record is accepted or rejected")
        try write { db in
            try db.cachedStatement(sql: "UPDATE record SET status = ?, received_at = ?, reject_reason = ? WHERE record_id = ? AND status = 'queued'").execute(
                           arguments: [status.rawValue, receivedAt, reason, recordID])
        }
    }

    /// The last `seq` handed out for a device (0 for none).
    public func lastSequence(deviceID: String) throws -> Int64 {
        try pool.read { db in try Int64.fetchOne(db.cachedStatement(sql: "SELECT last_seq FROM device_sequence WHERE device_id = ?"), arguments: [deviceID]) ?? 0 }
    }

    /// A write transaction with store errors named (full disk and the like).
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.writeWithoutTransaction { db in try KioskStore.transaction(db, begin: "BEGIN IMMEDIATE", body) }
        } catch let e as DatabaseError { throw StoreError(e) }
    }

    /// A read in one transaction (one consistent state), on a reader connection.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.unsafeRead { db in try KioskStore.transaction(db, begin: "BEGIN DEFERRED", body) }
    }

    /// `body` in one transaction, begun and committed with cached statements stepped by SQLite.
    /// GRDB's `write` and `read` prepare their BEGIN and COMMIT anew each time and go through
    /// a savepoint (issue 24 item 4: three transactions a decision + commit). On any error,
    /// the commit's included, what is open is rolled back. The
    /// store registers no GRDB transaction observer, which this way of committing would bypass.
    static func transaction<T>(_ db: Database, begin: String, _ body: (Database) throws -> T) throws -> T {
        try KioskStore.run(db, begin, [])
        do {
            let result = try body(db)
            try KioskStore.run(db, "COMMIT", [])
            return result
        } catch {
            if sqlite3_get_autocommit(db.sqliteConnection) == 0 { try? db.execute(sql: "ROLLBACK") }
            throw error
        }
    }
}
