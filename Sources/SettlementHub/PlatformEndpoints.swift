import Crypto
import Entitlements
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Roster changes posted to the hub, and device certificates (sync spec §5).
extension SettlementHub {
    /// Largest roster change taken over HTTP (bigger ones go by the command line).
    static let rosterChangeLimit = 64 << 20

    /// `POST /v1/regions/{region}/roster-changes`: the body is a signed roster change; its
    /// signature by a roster key the hub trusts is the authority, not the sender.
    func receiveRosterChange(_ request: Request, region: String) async -> Response {
        let bytes: [UInt8]
        do {
            var buffer = try await request.body.collect(upTo: Self.rosterChangeLimit)
            bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        } catch {
            return Self.error(.contentTooLarge, "too_large", "a roster change over HTTP is at most \(Self.rosterChangeLimit) bytes")
        }
        let change: RosterChange
        do { change = try RosterChange.read(bytes, trustedKeys: rosterKeys) } catch {
            return Self.error(.badRequest, "roster_change_refused", error.description)
        }
        guard change.region == region else {
            return Self.error(.badRequest, "roster_change_refused", "the change is for region \(change.region), posted to \(region)")
        }
        do {
            let n = try database.applyRosterChange(change, now: now())
            logger.notice("roster change applied", metadata: ["change_id": "\(change.changeID)", "entries": "\(n)", "urgent": "\(change.urgent)"])
            return Self.json(.ok, ["applied": change.changeID, "entries": n, "urgent": change.urgent])
        } catch let r as RosterChange.Refusal {
            return Self.error(.conflict, "roster_change_refused", r.description)
        } catch {
            logger.error("roster change not stored", metadata: ["error": "\(error)"])
            return Self.json(.serviceUnavailable, ["error": "database_error", "message": "try again later"], headers: [.retryAfter: "30"])
        }
    }

    /// The device named in the path must be the signer, registered and active (403 otherwise).
    private func certificateCaller(_ request: Request, deviceID: String) -> Response? {
        refreshRoster()
        // Sync spec §5: a device that is not active in the roster gets 403.
        guard roster[deviceID]?.status == "active" else { return Self.error(.forbidden, "device_not_active", "device \(deviceID) is not active") }
        if let refused = authenticateSync(request) { return refused }
        guard request.headers[.xDeviceID] == deviceID else {
            return Self.error(.forbidden, "wrong_device", "a device asks for its own certificate only")
        }
        return nil
    }

    /// `POST /v1/devices/{id}/certificate` (empty body): the publisher issues a certificate
    /// for the registered key; `202`.
    func certificateRequest(_ request: Request, deviceID: String) async -> Response {
        if let refused = certificateCaller(request, deviceID: deviceID) { return refused }
        guard let key = roster[deviceID]?.publicKey else { return Self.error(.forbidden, "unknown_device", "device \(deviceID) is not registered") }
        do {
            try database.requestCertificate(deviceID: deviceID, publicKey: Array(key.rawRepresentation), now: now())
            return Self.json(.accepted, ["status": "requested"])
        } catch {
            return Self.json(.serviceUnavailable, ["error": "database_error", "message": "try again later"], headers: [.retryAfter: "30"])
        }
    }

    /// `GET /v1/devices/{id}/certificate`: the newest certificate issued since the device's
    /// latest request, or `404` while there is none.
    func certificateFetch(_ request: Request, deviceID: String) async -> Response {
        if let refused = certificateCaller(request, deviceID: deviceID) { return refused }
        guard let cert = try? database.issuedCertificate(deviceID: deviceID) else {
            return Self.error(.notFound, "no_certificate", "no certificate newer than the last request yet")
        }
        return Self.json(.ok, ["certificate": Data(cert).base64EncodedString()])
    }
}

extension HubDatabase {
    /// A device asks for a certificate for `publicKey` (its registered key); a new request
    /// replaces an unanswered or answered one.
    public func requestCertificate(deviceID: String, publicKey: [UInt8], now: Date) throws {
        try engine.write { c in
            try c.execute("""
                INSERT INTO certificate_request (device_id, public_key, requested_at) VALUES (?, ?, ?)
                ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key, requested_at = excluded.requested_at,
                    issued_at = NULL, certificate = NULL
                """, deviceID, publicKey, SettlementHub.timestamp(now, fractional: false))
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
                          certificate, SettlementHub.timestamp(now, fractional: false), deviceID)
        }
    }

    public func issuedCertificate(deviceID: String) throws -> [UInt8]? {
        try engine.read { c in
            try c.row("SELECT certificate FROM certificate_request WHERE device_id = ? AND certificate IS NOT NULL", deviceID)?
                .optionalBlob("certificate")
        }
    }
}
