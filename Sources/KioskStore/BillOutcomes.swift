import KioskProtocol
import Foundation
import GRDB

/// Where a hospital bill stands (issue 20), as `GET /api/bills/{bill_reference}` answers it.
///
/// What is kept: the reference, the status, the decision code and the figures. Never the
/// patient's identity number: that is compared in memory and dropped, so a bill still open
/// when kioskd stops ends `cancelled` with `kiosk_restarted` at the next start, and the
/// hospital system posts it again.
public struct BillOutcome: Sendable, Equatable, Codable {
    /// The words of the bill API's `status`.
    public enum Status: String, Sendable, Codable, CaseIterable {
        /// Waiting for a fresh tap of a card.
        case waiting
        /// A pre-settlement is on the screen; nothing is written until the patient presses 确认.
        case confirming
        /// Subsidised and written to the card; the patient pays what the subsidy leaves.
        case granted
        /// The person's or card's standing, or the kiosk's own state, ends it: the patient
        /// pays the whole bill at the cashier.
        case refused
        /// Deleted by the hospital system, or `kiosk_restarted`.
        case cancelled
        /// A torn write of this bill not yet resolved: the patient was asked to tap again.
        case pending

        /// Still open (the one bill the kiosk works on).
        public var isOpen: Bool { self == .waiting || self == .confirming || self == .pending }
    }

    /// The hospital system's reference of the bill.
    public var billReference: String
    /// Where the bill stands.
    public var status: Status
    /// The decision or operating code of the last tap, or nil.
    public var code: String?
    /// The bill, in fen.
    public var billFen: Int64
    /// Set once granted (and on refusal: the patient pays the whole bill).
    public var subsidyFen: Int64?
    /// What the patient pays at the cashier, in fen; set with `subsidyFen`.
    public var patientPaysFen: Int64?
    /// The settlement records the bill made (granted).
    public var records: [String]
    /// When the outcome last changed (outcomes are kept 7 days after it).
    public var updatedAt: Date

    /// An outcome as given; `records` are the settlement record ids the bill made.
    public init(billReference: String, status: Status, code: String? = nil, billFen: Int64, subsidyFen: Int64? = nil,
                patientPaysFen: Int64? = nil, records: [String] = [], updatedAt: Date) {
        self.billReference = billReference; self.status = status; self.code = code; self.billFen = billFen
        self.subsidyFen = subsidyFen; self.patientPaysFen = patientPaysFen; self.records = records; self.updatedAt = updatedAt
    }

    /// The bill API's JSON object (keys as `docs/api.md` names them; nulls written).
    public var apiObject: [String: Any] {
        ["bill_reference": billReference, "status": status.rawValue, "code": code ?? NSNull(), "bill_fen": billFen,
         "subsidy_fen": subsidyFen ?? NSNull(), "patient_pays_fen": patientPaysFen ?? NSNull(), "records": records]
    }

    /// How long an outcome is kept after its last change.
    public static let keptSeconds: TimeInterval = 7 * 86_400
}

extension KioskStore {
    static func migrateBillOutcomes(_ db: Database) throws {
        try db.execute(sql: """
            -- Issue 20: where each hospital bill stands, for the hospital system. No identity number.
            CREATE TABLE bill_outcome (
                bill_reference TEXT PRIMARY KEY,
                status TEXT NOT NULL CHECK (status IN ('waiting','confirming','granted','refused','cancelled','pending')),
                code TEXT, bill_fen INTEGER NOT NULL, subsidy_fen INTEGER, patient_pays_fen INTEGER,
                records TEXT NOT NULL, updated_at TEXT NOT NULL);
            CREATE INDEX bill_outcome_updated ON bill_outcome(updated_at);
            """)
    }

    /// Writes (or replaces) a bill's outcome.
    public func saveBillOutcome(_ o: BillOutcome) throws {
        let records = String(decoding: (try? JSONSerialization.data(withJSONObject: o.records)) ?? Data("[]".utf8), as: UTF8.self)
        try write { db in
            try db.execute(sql: """
                INSERT INTO bill_outcome (bill_reference, status, code, bill_fen, subsidy_fen, patient_pays_fen, records, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(bill_reference) DO UPDATE SET status = excluded.status, code = excluded.code, bill_fen = excluded.bill_fen,
                  subsidy_fen = excluded.subsidy_fen, patient_pays_fen = excluded.patient_pays_fen, records = excluded.records,
                  updated_at = excluded.updated_at
                """, arguments: [o.billReference, o.status.rawValue, o.code, o.billFen, o.subsidyFen, o.patientPaysFen, records,
                                 Timestamp.string(o.updatedAt)])
        }
    }

    /// A bill's outcome, or nil when the kiosk never had it or it is older than 7 days.
    public func billOutcome(_ reference: String, now: Date) throws -> BillOutcome? {
        do {
            return try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM bill_outcome WHERE bill_reference = ? AND updated_at >= ?",
                                 arguments: [reference, Timestamp.string(now.addingTimeInterval(-BillOutcome.keptSeconds))]).map(Self.billOutcome)
            }
        } catch let e as DatabaseError { throw StoreError(e) }
    }

    static func billOutcome(_ row: Row) throws -> BillOutcome {
        let text: String = row["records"]
        let records = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String] ?? []
        guard let status = BillOutcome.Status(rawValue: row["status"]) else {
            throw StoreError(kind: .corrupt, message: "bill_outcome holds an unknown status")
        }
        return BillOutcome(billReference: row["bill_reference"], status: status, code: row["code"], billFen: row["bill_fen"],
                           subsidyFen: row["subsidy_fen"], patientPaysFen: row["patient_pays_fen"], records: records,
                           updatedAt: Timestamp.date(row["updated_at"]) ?? .distantPast)
    }

    /// At start-up: every bill still waiting or confirming (its patient's identity number went
    /// with the last process) ends `cancelled` with `kiosk_restarted`; outcomes older than 7
    /// days go. A `pending` bill stays: its torn write is resolved only by its card
    /// (`pendingBillOutcome`). Returns the references ended.
    @discardableResult
    public func endOpenBills(now: Date) throws -> [String] {
        try write { db in
            let open = try String.fetchAll(db, sql: "SELECT bill_reference FROM bill_outcome WHERE status IN ('waiting','confirming')")
            try db.execute(sql: """
                UPDATE bill_outcome SET status = 'cancelled', code = 'kiosk_restarted', updated_at = ?
                WHERE status IN ('waiting','confirming')
                """, arguments: [Timestamp.string(now)])
            try db.execute(sql: "DELETE FROM bill_outcome WHERE updated_at < ?", arguments: [Timestamp.string(now.addingTimeInterval(-BillOutcome.keptSeconds))])
            return open
        }
    }

    /// The bill left `pending` at the last stop, if any (the most recent).
    public func pendingBillOutcome() throws -> BillOutcome? {
        do {
            return try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM bill_outcome WHERE status = 'pending' ORDER BY updated_at DESC LIMIT 1").map(Self.billOutcome)
            }
        } catch let e as DatabaseError { throw StoreError(e) }
    }

    /// Forgets outcomes older than 7 days (run now and then; reads never return them either).
    public func forgetOldBillOutcomes(now: Date) throws {
        try write { db in
            try db.execute(sql: "DELETE FROM bill_outcome WHERE updated_at < ?", arguments: [Timestamp.string(now.addingTimeInterval(-BillOutcome.keptSeconds))])
        }
    }
}
