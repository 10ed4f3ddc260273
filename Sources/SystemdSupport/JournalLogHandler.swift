import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler for programs run by systemd (issue 23 item 4): when standard error is
/// the journal (`JOURNAL_STREAM` names its device and inode), each line starts with the
/// syslog priority `<N>` (sd-daemon(3)), so `journalctl -p warning` shows warnings and worse,
/// and carries no timestamp of its own (the journal stamps every line). Otherwise a plain
/// line with an RFC 3339 time, as `StreamLogHandler` writes it.
public struct JournalLogHandler: LogHandler {
    /// The logger's label, shown on each line.
    public let label: String
    /// The lowest level written.
    public var logLevel: Logger.Level = .info
    /// Metadata written on every line of this logger.
    public var metadata: Logger.Metadata = [:]
    /// Whether lines carry `<N>` priorities (standard error is the journal).
    public let journal: Bool
    let write: @Sendable (String) -> Void

    /// A handler writing to standard error; `journal` nil: decided by `JOURNAL_STREAM`.
    public init(label: String, journal: Bool? = nil, write: (@Sendable (String) -> Void)? = nil) {
        self.label = label
        self.journal = journal ?? JournalLogHandler.standardErrorIsJournal()
        self.write = write ?? { line in
            _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
        }
    }

    /// Metadata by key.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Makes every logger of the process a `JournalLogHandler` at `level` (call once, first).
    public static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var h = JournalLogHandler(label: label)
            h.logLevel = level
            return h
        }
    }

    /// The syslog priority of a level (RFC 5424: 2 critical … 7 debug).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: return 2
        case .error: return 3
        case .warning: return 4
        case .notice: return 5
        case .info: return 6
        case .debug, .trace: return 7
        }
    }

    /// Whether standard error is the journal's stream: `JOURNAL_STREAM` is `DEVICE:INODE` of it
    /// (systemd.exec(5)); a redirected stderr (a file, a pipe, a terminal) has another.
    public static func standardErrorIsJournal(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// Writes one line: `<N>label: message key=value …`, or with the time first outside the journal.
    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        // One line per event whatever the message holds: the journal splits on newlines.
        let text = "\(event.message)\(fields)".replacingOccurrences(of: "\n", with: "\\n")
        if journal {
            write("<\(Self.priority(event.level))>\(label): \(text)\n")
        } else {
            write("\(Date().formatted(.iso8601)) \(event.level) \(label): \(text)\n")
        }
    }
}
