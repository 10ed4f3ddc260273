import Foundation
import GRDB
import GRDBSQLite

/// One row of a cached statement, read in place with SQLite's own column functions (issue 24
/// item 4). GRDB's `Row` over a statement builds a dictionary of lowercased column names for
/// every cursor and reads each value through generic metadata; reading in place took a
/// decision + commit from 1,155,000 to 1,042,000 instructions (with `CompactJSON`'s first
/// version). A column is found by its name as the statement gives it (the store's names are
/// lowercase), or by position.
///
/// Reading is strict where GRDB's would trap: a NULL where a value must be, or a value of
/// another storage class, throws `StoreError.corrupt` (a damaged store is refused, never
/// taken for something else). Valid only inside the `decode` closure that received it.
struct StoreRow {
    let handle: SQLiteStatement

    /// The value of the column named `name`; a column the statement lacks throws.
    subscript<T: StoreColumn>(_ name: String) -> T {
        get throws { try T.read(handle, index(of: name), name) }
    }

    /// The value of the column at `index` (0-based); an index past the last column throws.
    subscript<T: StoreColumn>(_ index: Int) -> T {
        get throws {
            guard index >= 0, index < Int(sqlite3_column_count(handle)) else {
                throw StoreError(kind: .corrupt, message: "the statement has no column \(index): the store is of another version")
            }
            return try T.read(handle, CInt(index), nil)
        }
    }

    func index(of name: String) throws -> CInt {
        let count = sqlite3_column_count(handle)
        let found: CInt? = name.utf8CString.withUnsafeBufferPointer { wanted in
            for i in 0..<count where strcmp(sqlite3_column_name(handle, i), wanted.baseAddress!) == 0 { return i }
            return nil
        }
        guard let found else { throw StoreError(kind: .corrupt, message: "the store lacks the column \(name): it is damaged or of another version") }
        return found
    }
}

/// A value a `StoreRow` column holds: SQLite's storage class must be the type's.
protocol StoreColumn {
    /// The value at `index`; `name` only words the error.
    static func read(_ handle: SQLiteStatement, _ index: CInt, _ name: String?) throws -> Self
}

extension StoreColumn {
    static func mismatch(_ handle: SQLiteStatement, _ index: CInt, _ name: String?, _ wanted: String) -> StoreError {
        let column = name ?? String(cString: sqlite3_column_name(handle, index))
        let found = ["", "an integer", "a real", "text", "a blob", "NULL"][Int(min(max(sqlite3_column_type(handle, index), 0), 5))]
        return StoreError(kind: .corrupt, message: "the store's \(column) holds \(found) where \(wanted) must be: it is damaged")
    }
}

extension String: StoreColumn {
    static func read(_ handle: SQLiteStatement, _ index: CInt, _ name: String?) throws -> String {
        guard sqlite3_column_type(handle, index) == SQLITE_TEXT, let text = sqlite3_column_text(handle, index) else {
            throw mismatch(handle, index, name, "text")
        }
        let count = Int(sqlite3_column_bytes(handle, index))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }
}

extension Int64: StoreColumn {
    static func read(_ handle: SQLiteStatement, _ index: CInt, _ name: String?) throws -> Int64 {
        guard sqlite3_column_type(handle, index) == SQLITE_INTEGER else { throw mismatch(handle, index, name, "an integer") }
        return sqlite3_column_int64(handle, index)
    }
}

extension Int: StoreColumn {
    static func read(_ handle: SQLiteStatement, _ index: CInt, _ name: String?) throws -> Int {
        Int(try Int64.read(handle, index, name))
    }
}

extension Bool: StoreColumn {
    static func read(_ handle: SQLiteStatement, _ index: CInt, _ name: String?) throws -> Bool {
        try Int64.read(handle, index, name) != 0
    }
}

extension Data: StoreColumn {
    static func read(_ handle: SQLiteStatement, _ index: CInt, _ name: String?) throws -> Data {
        guard sqlite3_column_type(handle, index) == SQLITE_BLOB else { throw mismatch(handle, index, name, "a blob") }
        let count = Int(sqlite3_column_bytes(handle, index))
        guard count > 0, let bytes = sqlite3_column_blob(handle, index) else { return Data() }
        return Data(bytes: bytes, count: count)
    }
}

extension Optional: StoreColumn where Wrapped: StoreColumn {
    static func read(_ handle: SQLiteStatement, _ index: CInt, _ name: String?) throws -> Wrapped? {
        sqlite3_column_type(handle, index) == SQLITE_NULL ? nil : try Wrapped.read(handle, index, name)
    }
}

/// A value a statement's parameter takes, bound with SQLite's own functions (issue 24 item 4:
/// GRDB's arguments box, convert and check each value; binding directly, and stepping inserts
/// and updates directly, took a decision + commit from 921,000 to 829,000 instructions).
/// Text and blobs are copied by SQLite.
protocol StoreBindable {
    /// Binds the value to parameter `index` (1-based); SQLite's result code.
    func bind(_ handle: SQLiteStatement, _ index: CInt) -> CInt
}

/// SQLITE_TRANSIENT: SQLite takes its own copy of the bound bytes.
let sqliteTransient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

extension String: StoreBindable {
    /// Text (an empty string stays an empty text, never NULL).
    func bind(_ handle: SQLiteStatement, _ index: CInt) -> CInt {
        var value = self
        return value.withUTF8 { u in
            withUnsafePointer(to: 0 as CChar) { empty in
                let bytes = u.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) } ?? empty
                return sqlite3_bind_text(handle, index, bytes, CInt(u.count), sqliteTransient)
            }
        }
    }
}

extension Int64: StoreBindable {
    func bind(_ handle: SQLiteStatement, _ index: CInt) -> CInt { sqlite3_bind_int64(handle, index, self) }
}

extension Int: StoreBindable {
    func bind(_ handle: SQLiteStatement, _ index: CInt) -> CInt { sqlite3_bind_int64(handle, index, Int64(self)) }
}

extension Data: StoreBindable {
    /// A blob (an empty one stays an empty blob, never NULL).
    func bind(_ handle: SQLiteStatement, _ index: CInt) -> CInt {
        withUnsafeBytes { b in
            guard let base = b.baseAddress, !b.isEmpty else { return sqlite3_bind_zeroblob(handle, index, 0) }
            return sqlite3_bind_blob(handle, index, base, CInt(b.count), sqliteTransient)
        }
    }
}

extension Optional: StoreBindable where Wrapped: StoreBindable {
    func bind(_ handle: SQLiteStatement, _ index: CInt) -> CInt {
        switch self {
        case .some(let v): return v.bind(handle, index)
        case .none: return sqlite3_bind_null(handle, index)
        }
    }
}
