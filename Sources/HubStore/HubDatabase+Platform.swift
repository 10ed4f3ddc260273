import Foundation
import GRDB
import HubRules
import KioskProtocol

/// The platform's inbox and certificates: roster changes waiting for the publisher, and the
/// certificate requests it answers (issue 21 item 1).
extension HubDatabase {
    /// Whether a change of this id was applied.
    public func rosterChangeApplied(_ changeID: String) throws -> Bool {
        try engine.read { c in try c.exists("SELECT 1 FROM roster_change WHERE change_id = ?", changeID) }
    }

    /// A verified change's file put in the inbox, a MiB a part, in one transaction; its id,
    /// nil when a change of that id is queued already.
    @discardableResult
    public func queueRosterChange(file: URL, region: String, changeID: String, now: Date) throws -> Int64? {
        try engine.write { c in
            let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? 0
            guard let id = try c.int("INSERT INTO roster_inbox (region, change_id, bytes, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (change_id) DO NOTHING RETURNING id",
                                     region, changeID, size, Timestamp.string(now, fractional: false)) else {
                return nil
            }
            let handle = try FileHandle(forReadingFrom: file)
            defer { try? handle.close() }
            var part = 0
            while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
                try c.execute("INSERT INTO roster_inbox_part (inbox_id, part, data) VALUES (?, ?, ?)", id, part, Array(data))
                part += 1
            }
            return id
        }
    }

    /// The inbox, oldest first: id, region and change id.
    public func rosterInbox() throws -> [(id: Int64, region: String, changeID: String)] {
        try engine.read { c in
            try c.rows("SELECT id, region, change_id FROM roster_inbox ORDER BY id").map { (try $0.int("id"), try $0.text("region"), try $0.text("change_id")) }
        }
    }

    /// An inbox entry's bytes written to `file`, a part at a time.
    public func writeInboxEntry(_ id: Int64, to file: URL) throws {
        guard FileManager.default.createFile(atPath: file.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        let parts = try engine.read { c in try c.int("SELECT COUNT(*) FROM roster_inbox_part WHERE inbox_id = ?", id) ?? 0 }
        for part in 0..<parts {
            let data = try engine.read { c in try c.row("SELECT data FROM roster_inbox_part WHERE inbox_id = ? AND part = ?", id, part)?.optionalBlob("data") }
            guard let data else { throw HubDatabaseError.inconsistent("inbox entry \(id) lacks part \(part)") }
            try handle.write(contentsOf: data)
        }
    }

    /// An inbox entry taken out (applied or refused by the publisher).
    public func dropInboxEntry(_ id: Int64) throws {
        try engine.write { c in
            try c.execute("DELETE FROM roster_inbox_part WHERE inbox_id = ?", id)
            try c.execute("DELETE FROM roster_inbox WHERE id = ?", id)
        }
    }

    /// A device asks for a certificate for `publicKey` (its registered key); a new request
    /// replaces an unanswered or answered one.
    public func requestCertificate(deviceID: String, publicKey: [UInt8], now: Date) throws {
        try engine.write { c in
            try c.execute("""
                INSERT INTO certificate_request (device_id, public_key, requested_at) VALUES (?, ?, ?)
                ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key, requested_at = excluded.requested_at,
                    issued_at = NULL, certificate = NULL
                """, deviceID, publicKey, Timestamp.string(now, fractional: false))
        }
    }

    /// Requests not answered yet: device id and key.
    public func pendingCertificateRequests() throws -> [(deviceID: String, publicKey: [UInt8])] {
        try engine.read { c in
            try c.rows("SELECT device_id, public_key FROM certificate_request WHERE certificate IS NULL ORDER BY requested_at, device_id")
                .map { (try $0.text("device_id"), try $0.optionalBlob("public_key") ?? []) }
        }
    }

    /// The publisher's answer to a request (it holds the device-CA key; the hub does not).
    public func storeCertificate(deviceID: String, certificate: [UInt8], now: Date) throws {
        try engine.write { c in
            try c.execute("UPDATE certificate_request SET certificate = ?, issued_at = ? WHERE device_id = ?",
                          certificate, Timestamp.string(now, fractional: false), deviceID)
        }
    }

    /// The certificate the publisher issued for the device's latest request; nil while there is none
    /// (a new request clears the one issued before).
    public func issuedCertificate(deviceID: String) throws -> [UInt8]? {
        try engine.read { c in
            try c.row("SELECT certificate FROM certificate_request WHERE device_id = ? AND certificate IS NOT NULL", deviceID)?
                .optionalBlob("certificate")
        }
    }
}
