import Foundation
import SystemdSupport
import Logging
import Synchronization
import Testing

/// Issue 23 item 4: log lines with journald priorities when standard error is the journal.
@Suite struct JournalLogTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    @Test("to the journal: one <N>-prefixed line per event, the level's syslog priority, no timestamp of its own")
    func journalLines() {
        let out = Lines()
        var logger = Logger(label: "kioskd") { JournalLogHandler(label: $0, journal: true, write: { l in out.lines.withLock { $0.append(l) } }) }
        logger.logLevel = .debug
        logger.warning("card time ahead", metadata: ["card": "3307********0017"])
        logger.error("two\nlines")
        logger.info("ok")
        logger.critical("bad")
        logger.debug("detail")
        #expect(out.all == ["<4>kioskd: card time ahead card=3307********0017\n", "<3>kioskd: two\\nlines\n", "<6>kioskd: ok\n",
                            "<2>kioskd: bad\n", "<7>kioskd: detail\n"])
    }

    @Test("elsewhere (a terminal, a file): plain lines with the time, no priority prefix")
    func plainLines() {
        let out = Lines()
        let logger = Logger(label: "kioskctl") { JournalLogHandler(label: $0, journal: false, write: { l in out.lines.withLock { $0.append(l) } }) }
        logger.warning("hub slow")
        let line = out.all.first ?? ""
        #expect(!line.hasPrefix("<") && line.contains("warning kioskctl: hub slow"), "\(line)")
    }

    @Test("JOURNAL_STREAM counts only when it names standard error itself")
    func journalStreamMustBeStandardError() {
        var st = stat()
        #expect(fstat(2, &st) == 0)
        #expect(JournalLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)"]))
        #expect(!JournalLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "\(st.st_dev):\(UInt64(st.st_ino) &+ 1)"]))
        #expect(!JournalLogHandler.standardErrorIsJournal(environment: ["JOURNAL_STREAM": "nonsense"]))
        #expect(!JournalLogHandler.standardErrorIsJournal(environment: [:]))
    }
}
