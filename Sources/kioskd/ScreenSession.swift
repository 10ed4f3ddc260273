import KioskProtocol
import Crypto
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The screen's own session (issue 20 item 6): 确认, 取消, legal-aid filing, withdrawal and the
/// status slip are the screen's controls, so no token is served to whoever asks for `GET /`.
///
/// - kioskd keeps a one-time screen URL in a file (`--screen-url-file`, default
///   `STATE/screen-url`; mode 0640, group `kiosk-screen` when that group exists: root, the
///   kiosk user and the screen's browser read it), valid 5 minutes and renewed well before
///   it runs out and after each use; `kioskctl screen-url` prints it. Beside it,
///   `screen.html` sends a browser on to it: the browser unit opens that file, so the URL is
///   never on a command line (`/proc/PID/cmdline` is readable by every user).
/// - Opening the URL sets an HttpOnly, SameSite=Strict cookie with a fresh random session
///   value, kept in `STATE/screen-session.key` (0600) so it survives a kioskd restart. Each
///   opening replaces the previous session: only the browser that opened the URL last holds
///   a valid one.
final class ScreenSession: Sendable {
    static let cookieName = "bk_screen"
    static let urlSeconds: Double = 300
    static let screenGroup = "kiosk-screen"

    private let sessionFile: URL
    private let urlFile: URL
    private let port: Int
    /// The current session value, and the one-time token with the instant it stops being valid.
    private struct State {
        var session: String
        var token: String
        var until: ContinuousClock.Instant
    }
    private let state: Mutex<State>

    init(stateDir: URL, port: Int, urlFile: URL? = nil) throws {
        sessionFile = stateDir.appendingPathComponent("screen-session.key")
        self.urlFile = urlFile ?? stateDir.appendingPathComponent("screen-url")
        self.port = port
        var session = (try? String(contentsOf: sessionFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if session.utf8.count != 64 {
            session = Self.random()
            try Self.write(session + "\n", to: sessionFile, mode: 0o600, group: nil)
        }
        state = Mutex(State(session: session, token: "", until: .now))
        try renew()
    }

    /// A fresh one-time URL, written (atomically, 0640) for `kioskctl screen-url` and the
    /// browser's `screen.html`. Under the lock: two renewals never leave a stale file.
    func renew() throws {
        try state.withLock { s in
            let token = Self.random()
            let url = "http://127.0.0.1:\(port)/screen/open?t=\(token)"
            let group = getgrnam(Self.screenGroup).map { $0.pointee.gr_gid }
            try Self.write(url + "\n", to: urlFile, mode: 0o640, group: group)
            let launcher = urlFile.deletingLastPathComponent().appendingPathComponent("screen.html")
            try Self.write("<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=\(url)\"><title>惠民自助终端</title>\n",
                           to: launcher, mode: 0o640, group: group)
            s.token = token
            s.until = .now + .seconds(Self.urlSeconds)
        }
    }

    /// Redeems the one-time token: true once per token, within its 5 minutes. A new session
    /// value replaces the previous one (kept for restarts), and a new URL replaces the used one.
    /// - Returns: the `Set-Cookie` value for the new session, or nil.
    func redeem(_ presented: String) -> String? {
        let session = state.withLock { s -> String? in
            guard ContinuousClock.now < s.until, BearerToken.same(presented, s.token) else { return nil }
            s.token = ""   // one use
            s.session = Self.random()
            return s.session
        }
        guard let session else { return nil }
        do { try Self.write(session + "\n", to: sessionFile, mode: 0o600, group: nil) } catch {
            // Not kept: the session lasts until kioskd stops; the browser unit opens the URL again then.
        }
        try? renew()
        return "\(Self.cookieName)=\(session); Path=/; HttpOnly; SameSite=Strict"
    }

    /// Renews the URL when less than half its time is left (the screen service calls this
    /// every half validity), so the file always holds a URL good for minutes.
    func renewIfDue() {
        let due = state.withLock { ContinuousClock.now + .seconds(Self.urlSeconds / 2) >= $0.until || $0.token.isEmpty }
        if due { try? renew() }
    }

    /// Whether a `Cookie` header carries the current session.
    func holds(_ cookieHeader: String?) -> Bool {
        guard let cookieHeader, cookieHeader.utf8.count <= 4096 else { return false }
        let current = state.withLock { $0.session }
        for part in cookieHeader.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces)
            guard kv.hasPrefix(Self.cookieName + "=") else { continue }
            if BearerToken.same(String(kv.dropFirst(Self.cookieName.count + 1)), current) { return true }
        }
        return false
    }

    static func random() -> String { Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255) }) }

    /// Writes `text` to `url` atomically (a `.partial` beside it, then rename) with `mode`.
    static func write(_ text: String, to url: URL, mode: Int, group: gid_t?) throws {
        let partial = url.appendingPathExtension("partial")
        guard FileManager.default.createFile(atPath: partial.path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: partial.path])
        }
        _ = chmod(partial.path, mode_t(mode))
        if let group { _ = chown(partial.path, geteuid(), group) }
        guard rename(partial.path, url.path) == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path]) }
    }
}
