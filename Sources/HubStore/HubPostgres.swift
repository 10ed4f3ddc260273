import Foundation
import HubRules
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// Where a PostgreSQL hub database is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, or
/// a unix socket, `postgres://USER@/DATABASE?host=/run/postgresql` (PORT picks the socket
/// file, default 5432). `?search_path=NAME` puts the hub's tables in that schema (tests use
/// one schema each). TLS is not configured here: a province's hubs reach PostgreSQL over a
/// unix socket or a private network.
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    /// The login role.
    public var user: String
    /// The password, if the URL gives one (never shown by `description`).
    public var password: String?
    /// The server's host over TCP; nil with a unix socket.
    public var host: String?
    /// The unix socket's directory (`?host=/dir`); nil over TCP.
    public var socketDirectory: String?
    /// The TCP port, or the one in the socket file's name (`.s.PGSQL.PORT`); 5432 unless given.
    public var port: Int
    /// The database's name.
    public var database: String
    /// The schema of the hub's tables (`?search_path=NAME`, a plain name); nil: the server's default.
    public var searchPath: String?

    /// A PostgreSQL location or set-up the hub refuses: a bad `--postgres` URL, a name that is not
    /// plain, `--postgres` without `--shelf`.
    public enum Invalid: Error, CustomStringConvertible {
        /// Why, in words.
        case url(String)
        /// The reason, with the URL forms expected.
        public var description: String {
            switch self {
            case .url(let why): return "--postgres: \(why) (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or postgres://USER@/DATABASE?host=/socket/dir)"
            }
        }
    }

    /// Reads a `postgres://` (or `postgresql://`) URL.
    /// - Throws: `Invalid.url` without a user, a database name or a host (or `?host=/dir`), or
    ///   with a `search_path` that is not a plain name.
    public init(url text: String) throws {
        guard let c = URLComponents(string: text), c.scheme == "postgres" || c.scheme == "postgresql" else {
            throw Invalid.url("not a postgres:// URL")
        }
        guard let user = c.user, !user.isEmpty else { throw Invalid.url("no user") }
        self.user = user
        password = c.password
        port = c.port ?? 5432
        let name = String(c.path.drop(while: { $0 == "/" }))
        guard !name.isEmpty else { throw Invalid.url("no database name") }
        database = name
        let query = Dictionary((c.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        searchPath = query["search_path"]
        if let s = searchPath, !Self.isPlainName(s) {
            throw Invalid.url("search_path must be a plain name")
        }
        if let h = c.host, !h.isEmpty {
            host = h
        } else if let dir = query["host"], dir.hasPrefix("/") {
            socketDirectory = dir
        } else {
            throw Invalid.url("no host and no ?host=/socket/dir")
        }
    }

    /// A schema name put into SQL as it is: letters, digits and `_` only.
    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
    }

    /// Creates a schema (for a test of its own, or a second platform in one database).
    public static func createSchema(_ name: String, at location: PostgresLocation) throws {
        guard isPlainName(name) else { throw Invalid.url("schema \(name) is not a plain name") }
        let engine = try PostgresEngine(location: location)
        defer { engine.close() }
        try engine.write { try $0.execute("CREATE SCHEMA IF NOT EXISTS \(name)", arguments: []) }
    }

    /// The URL without its password (for logs and errors).
    public var description: String {
        let at = host.map { "\($0):\(port)" } ?? ""
        var q: [String] = []
        if let socketDirectory { q.append("host=\(socketDirectory)") }
        if let searchPath { q.append("search_path=\(searchPath)") }
        return "postgres://\(user)@\(at)/\(database)" + (q.isEmpty ? "" : "?" + q.joined(separator: "&"))
    }

    /// The pool's configuration: at most `maximumConnections`, each kept alive (`SELECT 1`
    /// every 30 s) and closed after 60 s idle.
    func clientConfiguration(maximumConnections: Int) -> PostgresClient.Configuration {
        var c: PostgresClient.Configuration = endpoint(
            tcp: { .init(host: $0, port: $1, username: $2, password: $3, database: $4, tls: .disable) },
            socket: { .init(unixSocketPath: $0, username: $1, password: $2, database: $3) })
        c.options.additionalStartupParameters = startupParameters
        c.options.maximumConnections = maximumConnections
        c.options.minimumConnections = 0
        c.options.keepAliveBehavior = .init(frequency: .seconds(30))
        c.options.connectionIdleTimeout = .seconds(60)
        return c
    }

    private var startupParameters: [(String, String)] {
        var parameters: [(String, String)] = [("application_name", "settlement-hub")]
        if let searchPath { parameters.append(("search_path", searchPath)) }
        return parameters
    }

    /// A connection of its own (the publication lock's session, LISTEN): outside the pool.
    var configuration: PostgresConnection.Configuration {
        var c: PostgresConnection.Configuration = endpoint(
            tcp: { .init(host: $0, port: $1, username: $2, password: $3, database: $4, tls: .disable) },
            socket: { .init(unixSocketPath: $0, username: $1, password: $2, database: $3) })
        c.options.additionalStartupParameters = startupParameters
        return c
    }

    /// A configuration of either kind (pool or lone connection) for this location: TCP to
    /// `host:port`, or the unix socket `DIR/.s.PGSQL.PORT`; no TLS (a private network or a socket).
    private func endpoint<C>(tcp: (String, Int, String, String?, String) -> C, socket: (String, String, String?, String) -> C) -> C {
        if let host { return tcp(host, port, user, password, database) }
        return socket("\(socketDirectory ?? "/run/postgresql")/.s.PGSQL.\(port)", user, password, database)
    }
}

/// A PostgreSQL error, or the connection failing: what the hub logs and answers 500/503 to.
public struct PostgresFailure: Error, CustomStringConvertible {
    /// `PostgreSQL: ` and the error, with the server's SQLSTATE, message and detail when it sent them.
    public var message: String
    /// The message.
    public var description: String { message }

    init(_ error: any Error) {
        if let p = error as? PSQLError {
            let fields = [p.serverInfo?[.sqlState], p.serverInfo?[.message], p.serverInfo?[.detail]].compactMap { $0 }
            message = "PostgreSQL: \(p.code)" + (fields.isEmpty ? "" : " (\(fields.joined(separator: ": ")))")
        } else {
            message = "PostgreSQL: \(error)"
        }
    }
}

/// Runs the PostgreSQL pool's tasks on a thread of its own, never Swift's cooperative pool:
/// a thread that waits for a connection (the storage calls are synchronous) then never
/// starves the tasks that hand connections out.
package final class PostgresPoolExecutor: TaskExecutor {
    static let shared = PostgresPoolExecutor()
    private let queue = DispatchQueue(label: "settlement.hub.postgres.pool")

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}

/// The provincial engine: postgres-nio's `PostgresClient` (a bounded pool, connections kept
/// alive, run as a service), used from blocking code (the hub's storage calls are synchronous,
/// as with SQLite) on threads that are neither an event loop nor a request's task
/// (`BlockingWork`); asynchronous writes run on those threads.
package final class PostgresEngine: SQLEngine {
    /// Advisory locks ("BKWR", "BKPB", "BKMG", each with the schema's hash as second key, so
    /// two platforms, or two tests, in one database never wait for each other): the write
    /// lock every write transaction takes, the publication lock, and the migration lock.
    static let writeLock = "1112233810, hashtext(current_schema())"
    static let publicationLock = "1112231490, hashtext(current_schema())"
    static let migrationLock = "1112231239, hashtext(current_schema())"
    static let channel = "hub_publication"
    /// Connections a process opens at most: one for each of the hub's blocking threads (8
    /// for lookups, 4 for writes).
    static let maximumConnections = 12

    let location: PostgresLocation
    private let client: PostgresClient
    private let service: Task<Void, Never>
    /// Ids of the connections opened outside the pool (process-wide: an `Atomic` stored in
    /// this class, whose init throws, crashes the 6.3 optimiser).
    private static let nextID = Atomic<Int>(1)
    private let logger: Logger
    package var kind: SQLEngineKind { .postgres }

    init(location: PostgresLocation, logger: Logger = Logger(label: "settlement.hub.postgres")) throws {
        self.location = location
        self.logger = logger
        // Fails here, at start-up, when the database cannot be reached (the pool would retry
        // in the background instead).
        let probe = try Self.connect(location, id: 0, logger: logger)
        _ = try? Self.wait(probe.close())
        let client = PostgresClient(configuration: location.clientConfiguration(maximumConnections: Self.maximumConnections),
                                    backgroundLogger: logger)
        self.client = client
        // The pool's lifecycle: runs until `close()` (the hub's ServiceGroup stops the hub,
        // which closes its engine).
        service = Task(executorPreference: PostgresPoolExecutor.shared) { await client.run() }
    }

    deinit { close() }

    /// Closes every pooled connection (never blocks: the last reference may go on any thread).
    func close() {
        service.cancel()
    }

    /// Closes every pooled connection and returns once the pool has closed them.
    func shutdown() async {
        service.cancel()
        await service.value
    }

    /// Waits for a future from a thread that is not its event loop (no `wait()`: it refuses
    /// any thread that belongs to an event loop group). With `connection`, the wait also ends
    /// (`ConnectionClosed`) once that connection is closed: a statement written to a
    /// connection while its channel closes is dropped by NIO and its future never completes.
    /// Checked every second (a callback on the close future would pile up on a pooled
    /// connection, one a statement).
    static func wait<T: Sendable>(_ future: EventLoopFuture<T>, on connection: PostgresConnection? = nil) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<T, any Error>?>(nil)
        future.whenComplete { r in
            result.withLock { $0 = r }
            done.signal()
        }
        while done.wait(timeout: .now() + 1) == .timedOut {
            guard let connection, connection.isClosed else { continue }
            // Closed: a completion already under way gets one more second.
            if done.wait(timeout: .now() + 1) == .timedOut { throw ConnectionClosed() }
            break
        }
        return try result.withLock { $0! }.get()
    }

    /// A statement's connection closed before it was answered.
    package struct ConnectionClosed: Error, CustomStringConvertible {
        package var description: String { "the PostgreSQL connection closed before the statement was answered" }
    }

    static func connect(_ location: PostgresLocation, id: Int, logger: Logger) throws -> PostgresConnection {
        do {
            return try wait(PostgresConnection.connect(on: PostgresConnection.defaultEventLoopGroup.next(), configuration: location.configuration,
                                                       id: id, logger: logger))
        } catch {
            throw PostgresFailure(error)
        }
    }

    /// A connection of its own, outside the pool (a session lock must never go back to a pool).
    func connect() throws -> PostgresConnection {
        try Self.connect(location, id: Self.nextID.add(1, ordering: .relaxed).oldValue, logger: logger)
    }

    /// A pooled connection, held until `release` (the pool's `withConnection`, kept open
    /// across the synchronous caller's transaction). postgres-nio's rule that the connection
    /// must not escape `withConnection` holds in time: its closure stays suspended until
    /// `release` is finished, and `run` uses the connection only before that.
    package struct Lease {
        let connection: PostgresConnection
        let release: AsyncStream<Void>.Continuation
    }

    private func lease() throws -> Lease {
        try BlockingWork.check()
        let ready = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<PostgresConnection, any Error>?>(nil)
        let (released, release) = AsyncStream<Void>.makeStream()
        let client = self.client
        Task(executorPreference: PostgresPoolExecutor.shared) {
            do {
                try await client.withConnection { connection in
                    outcome.withLock { $0 = .success(connection) }
                    ready.signal()
                    for await _ in released {}
                }
            } catch {
                let first = outcome.withLock { o -> Bool in
                    guard o == nil else { return false }
                    o = .failure(error)
                    return true
                }
                if first { ready.signal() }
            }
        }
        ready.wait()
        switch outcome.withLock({ $0! }) {
        case .success(let connection): return Lease(connection: connection, release: release)
        case .failure(let error): throw PostgresFailure(error)
        }
    }

    private func run<T>(begin: String, _ body: (PostgresTransaction) throws -> T) throws -> T {
        let lease = try lease()
        defer { lease.release.finish() }
        let tx = PostgresTransaction(connection: lease.connection, logger: logger)
        do {
            try tx.execute(begin, arguments: [])
            let value = try body(tx)
            try tx.execute("COMMIT", arguments: [])
            return value
        } catch {
            // A connection whose transaction cannot be rolled back is closed: the pool opens another.
            if !lease.connection.isClosed, (try? tx.execute("ROLLBACK", arguments: [])) == nil {
                let _: EventLoopFuture<Void> = lease.connection.close()
            }
            throw error
        }
    }

    package func read<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try run(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { try body($0) }
    }

    package func write<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try run(begin: "BEGIN") { tx in
            try tx.execute("SELECT pg_advisory_xact_lock(\(Self.writeLock))", arguments: [])
            return try body(tx)
        }
    }

    package func writeAsync<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await BlockingWork.offloadWrite { try self.write(body) }
    }

    package func instantBetweenWrites(_ now: () -> Date) throws -> Date {
        try write { _ in now() }
    }

    /// Schema changes, once, whichever process starts first (a migration lock, a table of those applied).
    func migrate(_ migrations: [(name: String, sql: String)]) throws {
        try run(begin: "BEGIN") { tx in
            try tx.execute("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", arguments: [])
            // Created only when missing: a hub role that owns nothing (province set-up) runs
            // no DDL at all once the tables' owner has migrated.
            if try !tx.exists("SELECT 1 WHERE to_regclass('hub_migration') IS NOT NULL") {
                try tx.execute("CREATE TABLE hub_migration (name TEXT COLLATE \"C\" PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                               arguments: [])
            }
            for m in migrations where try !tx.exists("SELECT 1 FROM hub_migration WHERE name = ?", m.name) {
                try tx.execute(m.sql, arguments: [])
                try tx.execute("INSERT INTO hub_migration (name) VALUES (?)", m.name)
            }
        }
    }

    package func tryPublicationLease() throws -> (any SQLLease)? {
        try BlockingWork.check()
        // A lease just released closes its session in its own time: PostgreSQL may hold the
        // lock a moment after. Asked again for up to a second before standing by.
        for attempt in 0..<10 {
            if let lease = try tryPublicationLeaseOnce() { return lease }
            if attempt < 9 { usleep(100_000) }
        }
        return nil
    }

    private func tryPublicationLeaseOnce() throws -> (any SQLLease)? {
        // A session lock on a connection of its own, outside the pool: held while this process
        // (and that session) lives, released by PostgreSQL when either dies.
        let connection = try connect()
        let tx = PostgresTransaction(connection: connection, logger: logger)
        do {
            guard try tx.rows("SELECT pg_try_advisory_lock(\(Self.publicationLock)) AS taken").first?.int("taken") == 1 else {
                _ = try? Self.wait(connection.close())
                return nil
            }
        } catch {
            _ = try? Self.wait(connection.close())
            throw error
        }
        return PostgresLease(transaction: tx)
    }

    package func publicationNotifications(_ onPublication: @escaping @Sendable () -> Void) -> (@Sendable () -> Void)? {
        let location = self.location, logger = self.logger
        let task = Task.detached {
            // Listens on a connection of its own; reconnects after a failure (the hub keeps
            // its slow poll meanwhile, so nothing waits forever).
            while !Task.isCancelled {
                do {
                    let c = try await PostgresConnection.connect(configuration: location.configuration, id: 0, logger: logger)
                    defer { Task { try? await c.close() } }
                    try await c.listen(on: Self.channel) { notifications in
                        onPublication() // anything published while not listening
                        for try await _ in notifications { onPublication() }
                    }
                } catch {
                    if Task.isCancelled { return }
                    logger.warning("LISTEN \(Self.channel) failed; reconnecting in 1 s", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        return { task.cancel() }
    }

    package func notifyPublication(_ connection: any SQLConnection) throws {
        try connection.execute("SELECT pg_notify(?, '')", Self.channel)
    }
}

/// The publication lock's session.
package final class PostgresLease: SQLLease {
    let transaction: PostgresTransaction
    /// Released once: a second release (the owner's, then `deinit`) would send the unlock on a
    /// connection already closing, whose query postgres-nio never answers (`isClosed` turns
    /// true only once the close completed), and wait for good.
    private let released = Atomic<Bool>(false)
    init(transaction: PostgresTransaction) { self.transaction = transaction }

    package func isHeld() -> Bool {
        guard !released.load(ordering: .acquiring) else { return false }
        return (try? transaction.rows("SELECT 1 AS alive").isEmpty == false) ?? false
    }

    package func release() {
        guard released.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let c = transaction.connection
        guard !c.isClosed else { return }
        // Unlocked at once when this thread may wait (PostgreSQL ends a closed session in its
        // own time, seconds on a loaded machine, and the next publisher found the lock still
        // held); on an event loop, which must never wait, the close alone releases it.
        if MultiThreadedEventLoopGroup.currentEventLoop == nil {
            _ = try? transaction.rows("SELECT pg_advisory_unlock(\(PostgresEngine.publicationLock)) AS released")
        }
        // Kept until the close completes.
        c.close().whenComplete { _ in _ = c }
    }

    deinit { release() }
}

/// Statements on one PostgreSQL connection (inside the transaction the engine opened).
package struct PostgresTransaction: SQLConnection {
    let connection: PostgresConnection
    let logger: Logger

    /// `?` → `$1, $2, …` (none of the hub's statements has a `?` inside a literal).
    static func numbered(_ sql: String) -> String {
        guard sql.contains("?") else { return sql }
        var out = ""
        out.reserveCapacity(sql.utf8.count + 16)
        var n = 0
        for ch in sql {
            if ch == "?" { n += 1; out += "$\(n)" } else { out.append(ch) }
        }
        return out
    }

    static func bindings(_ values: [SQLValue]) -> PostgresBindings {
        var b = PostgresBindings(capacity: values.count)
        for v in values {
            switch v {
            case .null(.int): b.append(Int64?.none)
            case .null(.text): b.append(String?.none)
            case .null(.blob): b.append(ByteBuffer?.none)
            case .int(let i): b.append(i)
            case .text(let s): b.append(s)
            case .blob(let bytes): b.append(ByteBuffer(bytes: bytes))
            }
        }
        return b
    }

    func query(_ sql: String, _ arguments: [SQLValue]) throws -> PostgresQueryResult {
        let q = arguments.isEmpty ? PostgresQuery(unsafeSQL: sql) : PostgresQuery(unsafeSQL: Self.numbered(sql), binds: Self.bindings(arguments))
        do {
            return try PostgresEngine.wait(connection.query(q, logger: logger), on: connection)
        } catch {
            throw PostgresFailure(error)
        }
    }

    package func execute(_ sql: String, arguments: [SQLValue]) throws {
        if arguments.isEmpty, sql.contains(";\n") {
            // A script (migrations): a statement at a time (each ends a line with `;`).
            for statement in sql.components(separatedBy: ";\n") where !statement.allSatisfy(\.isWhitespace) {
                var one = statement.trimmingCharacters(in: .whitespacesAndNewlines)
                if one.hasSuffix(";") { one.removeLast() }
                _ = try query(one, [])
            }
            return
        }
        _ = try query(sql, arguments)
    }

    /// Rows a fetch reads at a time from a cursor.
    static let cursorBatch = 2_000

    package func each(_ sql: String, arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws {
        try forEach(try query(sql, arguments), body)
    }

    /// Cursor names: unique, so a stream may be read while another is open.
    static let cursors = Atomic<Int>(0)

    package func stream(_ sql: String, arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws {
        // A cursor: a result of millions of rows is read in batches, in flat memory.
        let name = "hub_cursor_\(Self.cursors.add(1, ordering: .relaxed).oldValue)"
        try execute("DECLARE \(name) NO SCROLL CURSOR FOR " + sql, arguments: arguments)
        defer { _ = try? query("CLOSE \(name)", []) }
        while true {
            let batch = try query("FETCH FORWARD \(Self.cursorBatch) FROM \(name)", [])
            var count = 0
            try forEach(batch) { count += 1; try body($0) }
            if count < Self.cursorBatch { return }
        }
    }

    private func forEach(_ result: PostgresQueryResult, _ body: (SQLRow) throws -> Void) throws {
        var names: [String]?
        for row in result.rows {
            if names == nil { names = row.map(\.columnName) }
            try body(SQLRow(names: names!, values: try row.map(Self.value)))
        }
    }

    static func value(_ cell: PostgresCell) throws -> SQLValue {
        switch cell.dataType {
        case .int8, .int4, .int2:
            guard cell.bytes != nil else { return .null(.int) }
            return .int(try cell.decode(Int64.self))
        case .bool:
            guard cell.bytes != nil else { return .null(.int) }
            return .int(try cell.decode(Bool.self) ? 1 : 0)
        case .bytea:
            guard let bytes = cell.bytes else { return .null(.blob) }
            return .blob(Array(bytes.readableBytesView))
        case .numeric:
            guard cell.bytes != nil else { return .null(.int) }
            guard let v = Int64(try cell.decode(String.self)) else { throw SQLTypeError(column: cell.columnName, found: "a numeric that is not an integer") }
            return .int(v)
        default:
            guard cell.bytes != nil else { return .null(.text) }
            return .text(try cell.decode(String.self))
        }
    }
}
