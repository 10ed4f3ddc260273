import ArgumentParser
import HubStore

/// Where the hub's data is: a SQLite file (the default, a district) or PostgreSQL (a province,
/// several hub processes against one database, the published files in a shared folder).
public struct HubStorageOptions: ParsableArguments {
    /// The defaults: SQLite in `settlement-hub.sqlite`.
    public init() {}
    /// The SQLite file (default `settlement-hub.sqlite`), when `--postgres` is not given.
    @Option(help: "The hub's SQLite file (when --postgres is not given).") public var db = "settlement-hub.sqlite"
    /// PostgreSQL's URL, when the hub uses it instead of SQLite.
    @Option(help: "PostgreSQL instead of SQLite: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or postgres://USER@/DATABASE?host=/socket/dir.")
    public var postgres: String?
    /// With PostgreSQL: the folder of published snapshot files.
    @Option(help: "With --postgres: the folder of published snapshot files (shared by the hub processes).") public var shelf: String?

    /// Refuses `--postgres` without `--shelf`, and `--shelf` without `--postgres`.
    public func validate() throws {
        if postgres != nil, shelf == nil { throw ValidationError("--postgres needs --shelf DIR, the folder of published snapshot files") }
        if postgres == nil, shelf != nil { throw ValidationError("--shelf goes with --postgres (a SQLite hub keeps its files beside the database)") }
    }

    /// What the logs call it (no password).
    public var name: String { postgres.flatMap { try? PostgresLocation(url: $0).description } ?? postgres.map { _ in "the --postgres URL" } ?? db }

    /// Opens the hub's database (SQLite, or PostgreSQL with its shelf) and migrates it.
    public func open() throws -> HubDatabase { try HubDatabase.open(db: db, postgres: postgres, shelf: shelf) }
}

