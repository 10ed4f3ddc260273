import Crypto
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The screen's own session (issue 20 item 6): 确认, 取消, legal-aid filing, withdrawal and the
/// status slip are the screen's controls, so no token is served to whoever asks for `GET /`.
///
/// - kioskd keeps a one-time screen URL in `<state>/screen-url` (mode 0640, group
///   `kiosk-screen` when that group exists: root, the kiosk user and the screen's browser
///   read it), valid 5 minutes and renewed after each use; `kioskctl screen-url` prints it
///   and the browser unit opens it.
/// - Opening it sets an HttpOnly, SameSite=Strict cookie whose value is derived from a secret
///   kept in `<state>/screen-session.key` (0600), so the session survives a kioskd restart.
final class ScreenSession: Sendable {
    static let cookieName = "bk_screen"
    static let urlSeconds: Double = 300
    static let screenGroup = "kiosk-screen"

    private let cookieValue: String
    private let urlFile: URL
    private let port: Int
    /// The one-time token and when it stops being valid.
    private let current = Mutex<(token: String, until: ContinuousClock.Instant)>(("", .now))

    init(stateDir: URL, port: Int, urlFile: URL? = nil) throws {
        let keyFile = stateDir.appendingPathComponent("screen-session.key")
        var key = (try? Data(contentsOf: keyFile)).map(Array.init) ?? []
        if key.count != 32 {
            key = (0..<32).map { _ in UInt8.random(in: 0...255) }
            let partial = keyFile.appendingPathExtension("partial")
            FileManager.default.createFile(atPath: partial.path, contents: Data(key), attributes: [.posixPermissions: 0o600])
            _ = partial.withUnsafeFileSystemRepresentation { p in keyFile.withUnsafeFileSystemRepresentation { q in rename(p!, q!) } }
        }
        cookieValue = Self.hex(Array(HMAC<SHA256>.authenticationCode(for: Array("BK-SCREEN-SESSION-V1".utf8), using: SymmetricKey(data: key))))
        self.urlFile = urlFile ?? stateDir.appendingPathComponent("screen-url")
        self.port = port
        try renew()
    }

    /// A fresh one-time URL, written for `kioskctl screen-url` (atomically, 0640).
    func renew() throws {
        let token = Self.hex((0..<32).map { _ in UInt8.random(in: 0...255) })
        current.withLock { $0 = (token, .now + .seconds(Self.urlSeconds)) }
        let partial = urlFile.appendingPathExtension("partial")
        let text = "http://127.0.0.1:\(port)/screen/open?t=\(token)\n"
        FileManager.default.createFile(atPath: partial.path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o640])
        if let group = getgrnam(Self.screenGroup) { _ = chown(partial.path, geteuid(), group.pointee.gr_gid) }
        guard partial.withUnsafeFileSystemRepresentation({ p in urlFile.withUnsafeFileSystemRepresentation { q in rename(p!, q!) } }) == 0 else {
            throw CocoaError(.fileWriteUnknown)
        }
    }

    /// Redeems the one-time token: true once per token, within its 5 minutes; the URL is
    /// renewed after each use.
    func redeem(_ presented: String) -> Bool {
        let ok = current.withLock { c -> Bool in
            guard ContinuousClock.now < c.until, BearerToken.same(presented, c.token) else { return false }
            c.token = ""   // one use
            return true
        }
        if ok { try? renew() }
        return ok
    }

    /// Renews the URL when it has run out (the screen service calls this now and then).
    func renewIfExpired() {
        let expired = current.withLock { ContinuousClock.now >= $0.until || $0.token.isEmpty }
        if expired { try? renew() }
    }

    /// `Set-Cookie` for the screen's browser.
    var setCookie: String { "\(Self.cookieName)=\(cookieValue); Path=/; HttpOnly; SameSite=Strict" }

    /// Whether a `Cookie` header carries the screen's session.
    func holds(_ cookieHeader: String?) -> Bool {
        guard let cookieHeader, cookieHeader.utf8.count <= 4096 else { return false }
        for part in cookieHeader.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces)
            guard kv.hasPrefix(Self.cookieName + "=") else { continue }
            if BearerToken.same(String(kv.dropFirst(Self.cookieName.count + 1)), cookieValue) { return true }
        }
        return false
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
