import GRDB
import GRDBSQLite
import Synchronization

/// Issue 24 item 4: the WAL checkpoint moved out of the patient's wait. SQLite checkpoints
/// inside the commit that takes the WAL past 1,000 pages: at 11 pages a deduction, one patient
/// in 90 waited 2–3 ms more for it (the p99 of decision + commit). The kiosk checkpoints when
/// a card leaves the reader (`checkpointWhenIdle`), once the WAL holds `idlePages`; SQLite's
/// own checkpoint at 1,000 pages stays, for a kiosk whose patients never take their cards.
///
/// The store's writer reports the WAL's size after each commit through SQLite's WAL hook,
/// which replaces SQLite's automatic checkpoint (`sqlite3WalDefaultHook`): the hook does what
/// that one did (a PASSIVE checkpoint past `automaticPages`) and keeps the count.
final class WalWatch: Sendable {
    /// SQLite's default `wal_autocheckpoint`.
    static let automaticPages: CInt = 1000
    /// Pages in the WAL as last seen: after a commit, every frame of the WAL since it last
    /// started again (SQLite's count, frames already copied included); after a checkpoint,
    /// those it could not copy yet.
    let pages = Atomic<Int>(0)

    /// Installs the hook on `db`'s connection. `watch` must outlive the connection (the store
    /// keeps it retained for good: one small object per store opened).
    static func install(_ db: Database, _ context: UnsafeMutableRawPointer) {
        sqlite3_wal_hook(db.sqliteConnection, { context, connection, name, frames in
            guard let context else { return SQLITE_OK }
            let watch = Unmanaged<WalWatch>.fromOpaque(context).takeUnretainedValue()
            watch.pages.store(Int(frames), ordering: .relaxed)
            if frames >= WalWatch.automaticPages { watch.checkpoint(connection, name) }
            return SQLITE_OK   // a checkpoint that could not finish is not the commit's failure
        }, context)
    }

    /// A PASSIVE checkpoint on `connection` (never waits for readers or the writer); what is
    /// left in the WAL is remembered. SQLite's result code and the frames copied.
    @discardableResult
    func checkpoint(_ connection: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> (code: CInt, copied: Int) {
        var log: CInt = 0, copied: CInt = 0
        let code = sqlite3_wal_checkpoint_v2(connection, name, SQLITE_CHECKPOINT_PASSIVE, &log, &copied)
        if code == SQLITE_OK { pages.store(Int(max(0, log - copied)), ordering: .relaxed) }
        return (code, Int(max(0, copied)))
    }
}

extension KioskStore {
    /// Pages in the WAL a card's leaving checkpoints: about 23 deductions. Each checkpoint
    /// makes the next commit start the WAL again, which costs that commit one `fdatasync` of
    /// the WAL's header (`synchronous = FULL`); a checkpoint of 1,000 pages cost 2–3 ms.
    public static let idlePages = 250

    /// Pages in the WAL as the writer last saw them (`WalWatch.pages`).
    public var walPages: Int { walWatch.pages.load(ordering: .relaxed) }

    /// Called when nobody waits (a card has left the reader): a PASSIVE checkpoint once the
    /// WAL holds `idlePages`, on the writer (a deduction begun meanwhile waits for it, a few
    /// milliseconds at most). Returns the frames copied into the database (those of earlier
    /// checkpoints counted again: SQLite's figure), nil when none was due. A failure is the
    /// next checkpoint's to retry: nothing is lost (the WAL keeps it).
    @discardableResult
    public func checkpointWhenIdle(minimumPages: Int = KioskStore.idlePages) throws -> Int? {
        guard walPages >= minimumPages else { return nil }
        return try pool.writeWithoutTransaction { db in
            let (code, copied) = walWatch.checkpoint(db.sqliteConnection, nil)
            guard code == SQLITE_OK else { throw StoreError(KioskStore.sqliteFailure(connection: db.sqliteConnection)) }
            return copied
        }
    }
}
