import KioskProtocol
import Foundation
import GRDB

/// Sync spec §6: the latest instant the kiosk has good reason to believe has passed, and
/// whether its clock now reads more than the tolerance before it.
public struct ClockFloor: Sendable, Equatable {
    /// 10 minutes: a clock this far behind the floor is suspect; a card's `DF45` or a
    /// snapshot's `issued_at` this far ahead is tolerated.
    public static let tolerance: TimeInterval = 600

    /// The floor; nil before anything raised it.
    public var floor: Date?
    /// When a technician last reset it (`kioskctl clock reset`), who and why.
    public var resetAt: String?
    /// The operator who last reset it.
    public var resetBy: String?
    /// The reason given at the last reset.
    public var resetReason: String?
    /// Since when the clock has been suspect (the alert is raised once, then this is set).
    public var suspectSince: String?

    /// Why the clock is suspect at `now`, or nil when it reads sensibly.
    public func suspicion(at now: Date) -> String? {
        guard let floor, now < floor.addingTimeInterval(-ClockFloor.tolerance) else { return nil }
        return "the device clock reads \(Timestamp.string(now)), more than 10 minutes before \(Timestamp.string(floor)), which it has already seen"
    }
}

extension KioskStore {
    /// The clock floor as stored (empty before anything raised it).
    public func clockFloor() throws -> ClockFloor {
        try pool.read { db in try KioskStore.clockFloor(db) }
    }

    static func clockFloor(_ db: Database) throws -> ClockFloor {
        try KioskStore.row(db, "SELECT * FROM clock_floor WHERE id = 1") { r in
            ClockFloor(floor: Timestamp.date(try r["floor"]), resetAt: try r["reset_at"], resetBy: try r["reset_by"],
                       resetReason: try r["reset_reason"], suspectSince: try r["suspect_since"])
        } ?? ClockFloor()
    }

    /// Raises the floor to `instant` when it is later (never lowers it), in the caller's
    /// transaction. Records, card writes and installed snapshots call it.
    public static func raiseClockFloor(_ db: Database, to instant: Date) throws {
        // One cached statement: it runs with every record a kiosk makes. Times are all
        // `YYYY-MM-DDTHH:MM:SSZ`, so text order is time order.
        try KioskStore.run(db, """
            INSERT INTO clock_floor (id, floor) VALUES (1, ?)
            ON CONFLICT(id) DO UPDATE SET floor = excluded.floor WHERE excluded.floor > clock_floor.floor
            """, [Timestamp.string(instant)])
    }

    /// Notes the clock as suspect at `now`. True the first time (raise the alert then), false
    /// while it stays suspect.
    public func noteClockSuspect(now: Date, device: DeviceContext, detail: String) throws -> Bool {
        try write { db in
            let f = try KioskStore.clockFloor(db)
            guard f.suspectSince == nil else { return false }
            try db.cachedStatement(sql: "UPDATE clock_floor SET suspect_since = ? WHERE id = 1").execute(arguments: [Timestamp.string(now)])
            _ = try KioskStore.appendRecord(db, device: device, now: now,
                                            snapshotID: try SnapshotLoader.installed(db)?.header.snapshotID,
                                            content: .alert(.init(code: "clock_suspect", detail: detail)), index: RecordIndex())
            return true
        }
    }

    /// The clock reads sensibly again: the next suspicion raises a new alert.
    public func noteClockSensible() throws {
        try write { db in try db.cachedStatement(sql: "UPDATE clock_floor SET suspect_since = NULL WHERE id = 1 AND suspect_since IS NOT NULL").execute() }
    }

    /// `kioskctl clock reset`: the floor restarts from the clock's reading `now`; nothing from
    /// before raises it any more. An `alert` record says who and why.
    @discardableResult
    public func resetClockFloor(now: Date, operator op: String, reason: String, device: DeviceContext) throws -> StoredRecord {
        try write { db in
            let before = try KioskStore.clockFloor(db).floor
            let text = Timestamp.string(now)
            try db.cachedStatement(sql: """
                INSERT INTO clock_floor (id, floor, reset_at, reset_by, reset_reason) VALUES (1, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET floor = excluded.floor, reset_at = excluded.reset_at, reset_by = excluded.reset_by,
                    reset_reason = excluded.reset_reason, suspect_since = NULL
                """).execute(arguments: [text, text, op, reason])
            let detail = "clock floor reset by \(op) from \(before.map(Timestamp.string) ?? "none") to \(text): \(reason)"
            return try KioskStore.appendRecord(db, device: device, now: now,
                                               snapshotID: try SnapshotLoader.installed(db)?.header.snapshotID,
                                               content: .alert(.init(code: "clock_reset", detail: detail, operator: op)),
                                               index: RecordIndex(), raisesFloor: false)
        }
    }
}
