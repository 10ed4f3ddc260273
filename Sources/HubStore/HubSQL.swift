import Foundation
import HubRules
import GRDB
import NIOPosix
import Synchronization

/// The hub's storage interface (issue 12): one small SQL surface that the hub, the roster, the
/// shelf and the publisher are written against, with two engines behind it, chosen at
/// start-up: SQLite through GRDB (the embedded default, a district's hub) and PostgreSQL
/// through postgres-nio (a province's hub, several hub processes against one database).
///
/// Statements are written once, in the SQL both engines read alike, with `?` placeholders
/// (PostgreSQL's engine numbers them). Where the engines differ (the schema, the write lock,
/// advisory locks, notifications) the engine does it, not the caller.

/// The engine behind a `HubDatabase`.
public enum SQLEngineKind: String, Sendable {
    /// One SQLite file through GRDB: the embedded default, a district's hub.
    case sqlite
    /// PostgreSQL through postgres-nio: a province's hub, shared by several hub processes.
    case postgres
}

/// The type of a bound value: a NULL carries one (PostgreSQL types every parameter).
public enum SQLType: Sendable, Equatable {
    /// A 64-bit integer, text, or bytes (`BYTEA` on PostgreSQL).
    case int, text, blob
}

/// A value bound to a statement or read from a row.
public enum SQLValue: Sendable, Equatable {
    /// NULL, with the type it is bound as (PostgreSQL types every parameter).
    case null(SQLType)
    /// A 64-bit integer (booleans bind as 0 or 1).
    case int(Int64)
    /// Text.
    case text(String)
    /// Bytes.
    case blob([UInt8])
}

/// What can be bound to a `?`.
public protocol SQLBindable {
    /// The value bound for this one.
    var sqlValue: SQLValue { get }
    /// The type a NULL of this type is bound as (an `Optional` that is nil).
    static var sqlType: SQLType { get }
}

extension Int64: SQLBindable {
    /// Bound as an integer.
    public var sqlValue: SQLValue { .int(self) }
    /// Integers bind as `int`.
    public static var sqlType: SQLType { .int }
}

extension Int: SQLBindable {
    /// Bound as a 64-bit integer.
    public var sqlValue: SQLValue { .int(Int64(self)) }
    /// Integers bind as `int`.
    public static var sqlType: SQLType { .int }
}

extension Bool: SQLBindable {
    /// Bound as the integer 1 (true) or 0 (false).
    public var sqlValue: SQLValue { .int(self ? 1 : 0) }
    /// Booleans bind as `int`.
    public static var sqlType: SQLType { .int }
}

extension String: SQLBindable {
    /// Bound as text.
    public var sqlValue: SQLValue { .text(self) }
    /// Strings bind as `text`.
    public static var sqlType: SQLType { .text }
}

extension Array: SQLBindable where Element == UInt8 {
    /// Bound as bytes (`BYTEA` on PostgreSQL).
    public var sqlValue: SQLValue { .blob(self) }
    /// Bytes bind as `blob`.
    public static var sqlType: SQLType { .blob }
}

extension Optional: SQLBindable where Wrapped: SQLBindable {
    /// The wrapped value, or a NULL of the wrapped type (PostgreSQL types every parameter).
    public var sqlValue: SQLValue { self?.sqlValue ?? .null(Wrapped.sqlType) }
    /// The wrapped type's.
    public static var sqlType: SQLType { Wrapped.sqlType }
}

/// A column read as the wrong type, or missing: the schema and the code disagree.
public struct SQLTypeError: Error, CustomStringConvertible {
    /// The column's name (`1` for the first column read by `int(_:_:)` or `text(_:_:)`).
    public var column: String
    /// What the column held instead, and what was expected.
    public var found: String
    /// The error as logged: `column NAME: what was found`.
    public var description: String { "column \(column): \(found)" }
}

/// One result row, its values by column name.
public struct SQLRow: Sendable {
    let names: [String]
    let values: [SQLValue]

    init(names: [String], values: [SQLValue]) {
        self.names = names
        self.values = values
    }

    /// The value of `column`; nil when the row has no such column.
    public subscript(_ column: String) -> SQLValue? {
        names.firstIndex(of: column).map { values[$0] }
    }

    /// The first column's value.
    public var first: SQLValue? { values.first }

    /// The column's value as `pick` reads it; nil for NULL when `nullable`; otherwise a type error.
    private func value<T>(_ column: String, _ what: String, nullable: Bool, _ pick: (SQLValue) -> T?) throws -> T? {
        let v = self[column]
        if let v, let picked = pick(v) { return picked }
        if nullable, case .null? = v { return nil }
        throw SQLTypeError(column: column, found: "\(String(describing: v)), not \(what)\(nullable ? " or NULL" : "")")
    }

    /// The column as an integer.
    /// - Throws: `SQLTypeError` when it is NULL, missing or not an integer.
    public func int(_ column: String) throws -> Int64 {
        try value(column, "an integer", nullable: false) { if case .int(let v) = $0 { v } else { nil } }!
    }

    /// The column as text.
    /// - Throws: `SQLTypeError` when it is NULL, missing or not text.
    public func text(_ column: String) throws -> String {
        try value(column, "text", nullable: false) { if case .text(let v) = $0 { v } else { nil } }!
    }

    /// The column as text, nil for NULL.
    /// - Throws: `SQLTypeError` when it is missing or neither text nor NULL.
    public func optionalText(_ column: String) throws -> String? {
        try value(column, "text", nullable: true) { if case .text(let v) = $0 { v } else { nil } }
    }

    /// The column as bytes, nil for NULL.
    /// - Throws: `SQLTypeError` when it is missing or neither bytes nor NULL.
    public func optionalBlob(_ column: String) throws -> [UInt8]? {
        try value(column, "bytes", nullable: true) { if case .blob(let v) = $0 { v } else { nil } }
    }
}

/// One open transaction of either engine.
public protocol SQLConnection {
    /// Runs one statement (several, separated by `;`, when there are no arguments).
    func execute(_ sql: String, arguments: [SQLValue]) throws
    /// Runs a query and hands each row to `body`.
    func each(_ sql: String, arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws
    /// `each` for a result of any size, in flat memory (SQLite: a cursor, as `each`;
    /// PostgreSQL: a server-side cursor read a batch of rows at a time).
    func stream(_ sql: String, arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws
}

/// `(?, ?), (?, ?)…`: `rows` tuples of `width` placeholders.
package func placeholderTuples(_ rows: Int, width: Int) -> String {
    let one = "(" + Array(repeating: "?", count: width).joined(separator: ", ") + ")"
    return Array(repeating: one, count: rows).joined(separator: ", ")
}

extension SQLConnection {
    /// Runs one statement, its `?` placeholders bound to `arguments` in order.
    public func execute(_ sql: String, _ arguments: any SQLBindable...) throws {
        try execute(sql, arguments: arguments.map(\.sqlValue))
    }

    /// Runs `sql(tuples)` for each `per` rows at most (on PostgreSQL a statement is a round
    /// trip), `tuples` their placeholders and `leading` the arguments before theirs.
    public func executeChunked(_ rows: [[SQLValue]], per: Int = 200, leading: [SQLValue] = [], _ sql: (String) -> String) throws {
        guard let width = rows.first?.count else { return }
        for start in stride(from: 0, to: rows.count, by: per) {
            let chunk = rows[start..<min(start + per, rows.count)]
            try execute(sql(placeholderTuples(chunk.count, width: width)), arguments: leading + chunk.flatMap { $0 })
        }
    }

    /// Every row of a query, read into memory (`stream` for a result of any size).
    public func rows(_ sql: String, arguments: [SQLValue]) throws -> [SQLRow] {
        var out: [SQLRow] = []
        try each(sql, arguments: arguments) { out.append($0) }
        return out
    }

    /// `rows(_:arguments:)` with `arguments` bound in order.
    public func rows(_ sql: String, _ arguments: any SQLBindable...) throws -> [SQLRow] {
        try rows(sql, arguments: arguments.map(\.sqlValue))
    }

    /// The first row of a query, nil when it returns none.
    public func row(_ sql: String, _ arguments: any SQLBindable...) throws -> SQLRow? {
        try rows(sql, arguments: arguments.map(\.sqlValue)).first
    }

    /// The first column of the first row as an integer (nil: no row, or NULL).
    public func int(_ sql: String, _ arguments: any SQLBindable...) throws -> Int64? {
        switch try rows(sql, arguments: arguments.map(\.sqlValue)).first?.first {
        case .int(let v)?: return v
        case .null?, nil: return nil
        case let other?: throw SQLTypeError(column: "1", found: "\(other), not an integer")
        }
    }

    /// The first column of the first row as text (nil: no row, or NULL).
    public func text(_ sql: String, _ arguments: any SQLBindable...) throws -> String? {
        switch try rows(sql, arguments: arguments.map(\.sqlValue)).first?.first {
        case .text(let v)?: return v
        case .null?, nil: return nil
        case let other?: throw SQLTypeError(column: "1", found: "\(other), not text")
        }
    }

    /// The first column of every row as text.
    public func texts(_ sql: String, _ arguments: any SQLBindable...) throws -> [String] {
        try rows(sql, arguments: arguments.map(\.sqlValue)).compactMap { if case .text(let v)? = $0.first { return v }; return nil }
    }

    /// Whether the query returns a row.
    public func exists(_ sql: String, _ arguments: any SQLBindable...) throws -> Bool {
        var found = false
        try each(sql, arguments: arguments.map(\.sqlValue)) { _ in found = true }
        return found
    }
}

/// Where blocking database work may run (issue 21 item 5): never on a NIO event loop, and
/// never on a request's task (the handlers run on Swift's cooperative pool, two threads on
/// these machines: two waiting queries would stall every request, and a PostgreSQL lease
/// waits for the pool's own tasks). Handlers hand such work to `offload`, which runs it on
/// threads of its own; the engines refuse a blocking call made anywhere else.
public enum BlockingWork {
    /// Set for the whole of a request's handling (the hub's router middleware).
    @TaskLocal package static var onRequestTask = false

    /// Threads for blocking database and file work, shared by every hub in the process.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 8)
        pool.start()
        return pool
    }()

    /// Threads for write transactions (`SQLEngine.writeAsync` on PostgreSQL): writes wait for
    /// one another (the write lock), so they wait here, never holding up a lookup.
    static let writeThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    /// Runs `body` on the write threads.
    package static func offloadWrite<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await run(on: writeThreads, body)
    }

    /// Runs `body` on the blocking threads (no task-locals there: the guard passes). Runs
    /// to the end even if the request's task is cancelled meanwhile (a write half done is
    /// never left behind by a client that went away).
    package static func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await run(on: threads, body)
    }

    /// `offload` for work that reports its own failures.
    package static func offload<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            threads.submit { _ in continuation.resume(returning: body()) }
        }
    }

    /// `body` on a thread of `pool` (the pools live as long as the process).
    private static func run<T: Sendable>(on pool: NIOThreadPool, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            pool.submit { _ in continuation.resume(with: Result(catching: body)) }
        }
    }

    /// Refused: a blocking database call on an event loop or on a request's task.
    public struct Refused: Error, CustomStringConvertible {
        /// Names the mistake: a blocking call made where it must be offloaded.
        public var description: String { "a blocking database call on an event loop or a request's task (a bug: it must be offloaded)" }
    }

    /// Throws `Refused` where a blocking call must not be made.
    static func check() throws {
        if onRequestTask || MultiThreadedEventLoopGroup.currentEventLoop != nil { throw Refused() }
    }
}

/// A lock held by one process of the platform at a time (publication): dropped when the
/// process dies, so another takes over.
public protocol SQLLease: Sendable {
    /// Whether the lock is still held (PostgreSQL: its session is alive).
    func isHeld() -> Bool
    /// Gives the lock up (another process may take it); a second call does nothing.
    func release()
}

/// A storage engine: transactions, and the few things the engines do differently.
public protocol SQLEngine: Sendable {
    /// Which engine this is.
    var kind: SQLEngineKind { get }
    /// A read transaction that sees one consistent state.
    func read<T>(_ body: (any SQLConnection) throws -> T) throws -> T
    /// A write transaction. Writes are serialised (SQLite's single writer; PostgreSQL: an
    /// advisory lock every write transaction takes first), so every check made inside sees
    /// every earlier write, whichever process made it.
    func write<T>(_ body: (any SQLConnection) throws -> T) throws -> T
    /// `write` off the caller's thread.
    func writeAsync<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T
    /// Reads `now` while holding the write lock: every write transaction that began before
    /// has committed, and every later one starts after.
    func instantBetweenWrites(_ now: () -> Date) throws -> Date
    /// The publication lock, if no other process holds it (nil: another does).
    func tryPublicationLease() throws -> (any SQLLease)?
    /// Wakes `onPublication` when any process publishes (PostgreSQL: LISTEN/NOTIFY); nil when
    /// the engine has no such channel (SQLite: the hub polls).
    func publicationNotifications(_ onPublication: @escaping @Sendable () -> Void) -> (@Sendable () -> Void)?
    /// Tells every listener that a publication committed (PostgreSQL: NOTIFY inside `connection`'s transaction).
    func notifyPublication(_ connection: any SQLConnection) throws
}

// MARK: SQLite (GRDB)

/// The embedded engine: one SQLite file (GRDB `DatabasePool`, WAL, `synchronous = FULL`).
package final class SQLiteEngine: SQLEngine {
    let pool: DatabasePool
    let path: String
    package var kind: SQLEngineKind { .sqlite }

    init(pool: DatabasePool, path: String) {
        self.pool = pool
        self.path = path
    }

    package func read<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try BlockingWork.check()
        return try pool.read { db in try body(SQLiteConnection(db: db)) }
    }

    package func write<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try BlockingWork.check()
        return try pool.write { db in try body(SQLiteConnection(db: db)) }
    }

    package func writeAsync<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await pool.write { db in try body(SQLiteConnection(db: db)) }
    }

    package func instantBetweenWrites(_ now: () -> Date) throws -> Date {
        try pool.writeWithoutTransaction { db in
            var t = Date()
            try db.inTransaction(.immediate) { t = now(); return .commit }
            return t
        }
    }

    package func tryPublicationLease() throws -> (any SQLLease)? {
        try FileLease.take(path + ".publisher.lock")
    }

    package func publicationNotifications(_ onPublication: @escaping @Sendable () -> Void) -> (@Sendable () -> Void)? { nil }

    package func notifyPublication(_ connection: any SQLConnection) throws {}
}

/// `flock` on a file beside the database: held while the process lives.
package final class FileLease: SQLLease {
    /// The locked file's descriptor (read by the tests, which copy it as a spawned child would).
    let fd: Int32
    /// Closed once: a second `close` could close a descriptor the number was given to since.
    private let released = Atomic<Bool>(false)

    private init(fd: Int32) { self.fd = fd }

    deinit { release() }

    static func take(_ path: String) throws -> FileLease? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path]) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { close(fd); return nil }
        return FileLease(fd: fd)
    }

    package func isHeld() -> Bool { !released.load(ordering: .acquiring) }
    package func release() {
        guard released.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        // Unlocked before the close: a child another thread is spawning holds a copy of every
        // descriptor until its exec, and the lock belongs to the open file, so a close alone
        // left it held for that moment and the next publisher stood by (seen in CI).
        flock(fd, LOCK_UN)
        close(fd)
    }
}

package struct SQLiteConnection: SQLConnection {
    let db: Database

    static func arguments(_ values: [SQLValue]) -> StatementArguments {
        StatementArguments(values.map { v -> DatabaseValue in
            switch v {
            case .null: return .null
            case .int(let i): return i.databaseValue
            case .text(let s): return s.databaseValue
            case .blob(let b): return Data(b).databaseValue
            }
        })
    }

    package func execute(_ sql: String, arguments: [SQLValue]) throws {
        if arguments.isEmpty, sql.contains(";") {
            try db.execute(sql: sql)
        } else {
            try db.cachedStatement(sql: sql).execute(arguments: Self.arguments(arguments))
        }
    }

    package func stream(_ sql: String, arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws {
        try each(sql, arguments: arguments, body)
    }

    package func each(_ sql: String, arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws {
        let statement = try db.cachedStatement(sql: sql)
        let names = statement.columnNames
        let cursor = try Row.fetchCursor(statement, arguments: Self.arguments(arguments))
        while let row = try cursor.next() {
            try body(SQLRow(names: names, values: row.databaseValues.map { v in
                switch v.storage {
                case .null: return .null(.text)
                case .int64(let i): return .int(i)
                case .double(let d): return .int(Int64(d))
                case .string(let s): return .text(s)
                case .blob(let d): return .blob(Array(d))
                }
            }))
        }
    }
}
