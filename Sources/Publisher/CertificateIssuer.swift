import BenefitCard
import Crypto
import Foundation
import HubStore

/// The publisher's answer to certificate requests (sync spec §5, card spec §5.2): a device
/// certificate for the device's registered key, valid at most 90 days (both ends counted),
/// signed with the device-CA key the hub never holds.
public struct CertificateIssuer: Sendable {
    /// The hub's database: certificate requests are read from it, certificates written into it.
    public let database: HubDatabase
    /// The device-CA key's id, written into each certificate.
    public let caKeyID: String
    /// The device-CA key (read by `hub-publisher` from a file it alone may read).
    public let caKey: Curve25519.Signing.PrivateKey
    /// Days of validity, "valid from" and "valid through" both counted (at most 90).
    public let days: Int
    let now: @Sendable () -> Date

    /// An issuer of `days`-day certificates (1…90); `now` is the clock certificates start from.
    public init(database: HubDatabase, caKeyID: String, caKey: Curve25519.Signing.PrivateKey, days: Int = 90,
                now: @escaping @Sendable () -> Date = { Date() }) {
        precondition((1...90).contains(days), "a device certificate lasts 1…90 days")
        self.database = database
        self.caKeyID = caKeyID
        self.caKey = caKey
        self.days = days
        self.now = now
    }

    /// Issues a certificate for every pending request of a device that is still registered
    /// and active with the same key; returns the device ids answered.
    @discardableResult
    public func issuePending(roster: Roster) throws -> [String] {
        try issuePending { roster[$0] }
    }

    /// Issue 21 item 1: the devices as the publisher's verified roster changes registered
    /// them, not as the hub's database says (a request for a key no verified change
    /// registered is never answered).
    @discardableResult
    public func issuePending(archive: RosterArchive) throws -> [String] {
        try issuePending { try archive.device($0) }
    }

    func issuePending(device lookup: (String) throws -> Roster.Device?) throws -> [String] {
        var issued: [String] = []
        let instant = now()
        for request in try database.pendingCertificateRequests() {
            guard let device = try lookup(request.deviceID), device.status == "active",
                  Array(device.publicKey.rawRepresentation) == request.publicKey else { continue }
            // China Standard Time calendar days, "valid from" and "valid through" both counted.
            let from = CardDate(date: instant), through = CardDate(date: instant.addingTimeInterval(Double(days - 1) * 86_400))
            let cert = try DeviceCertificate.issue(caKeyID: caKeyID, caKey: caKey, deviceID: request.deviceID, devicePublicKey: request.publicKey,
                                                   validFrom: from, validThrough: through)
            try database.storeCertificate(deviceID: request.deviceID, certificate: cert.encoded, now: instant)
            issued.append(request.deviceID)
        }
        return issued
    }
}
