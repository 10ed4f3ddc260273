import Foundation

/// The lines of a file, read 1 MiB at a time (flat memory whatever its size), without their
/// newline; a last line without one is handed over too.
public enum TextLines {
    /// Calls `body` with each line of `file` in order.
    /// - Throws: What opening or reading the file throws, or what `body` throws (which stops the reading).
    public static func each(_ file: URL, _ body: (ArraySlice<UInt8>) throws -> Void) throws {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var pending: [UInt8] = []
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            pending.append(contentsOf: chunk)
            var start = pending.startIndex
            while let nl = pending[start...].firstIndex(of: 0x0A) {
                try body(pending[start..<nl])
                start = nl + 1
            }
            pending.removeSubrange(..<start)
        }
        if !pending.isEmpty { try body(pending[...]) }
    }
}
