import Crypto
import KioskProtocol
import Foundation
import HubRules
import HubStore
import HTTPTypes
import Hummingbird
import NIOCore

/// Roster changes posted to the hub, and device certificates (sync spec §5).
extension SettlementHub {
    /// Largest roster change taken over HTTP (bigger ones go by the command line).
    static let rosterChangeLimit = 64 << 20

    /// `POST /v1/regions/{region}/roster-changes`: the body is a signed roster change; its
    /// signature by a roster key the hub trusts for the region is the authority, not the
    /// sender. The hub never applies it (issue 21 item 1): it streams the body to a file
    /// while hashing it (flat memory at any size), verifies it, and puts it in the inbox the
    /// publisher empties (`202`); the hubs see it once the publisher has applied it.
    func receiveRosterChange(_ request: Request, region: String) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > Self.rosterChangeLimit {
            throw Stop(response: Self.error(.contentTooLarge, "too_large", "a roster change over HTTP is at most \(Self.rosterChangeLimit) bytes", close: true))
        }
        // At most two roster changes arrive at once (each may be 64 MiB on disk until verified).
        guard rosterUploads.add(1, ordering: .relaxed).newValue <= 2 else {
            rosterUploads.subtract(1, ordering: .relaxed)
            return Self.json(.tooManyRequests, ["error": "too_many_requests", "message": "two roster changes are being received; try again"],
                             headers: [.retryAfter: "30", .connection: "close"])
        }
        defer { rosterUploads.subtract(1, ordering: .relaxed) }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("roster-change-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: file) }
        do {
            guard FileManager.default.createFile(atPath: file.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw CocoaError(.fileWriteUnknown)
            }
            let handle = try FileHandle(forWritingTo: file)
            defer { try? handle.close() }
            var total = 0
            var head = FirstLine()
            for try await buffer in request.body {
                total += buffer.readableBytes
                guard total <= Self.rosterChangeLimit else {
                    throw Stop(response: Self.error(.contentTooLarge, "too_large", "a roster change over HTTP is at most \(Self.rosterChangeLimit) bytes", close: true))
                }
                // The header line first: a change no trusted key may sign for this region is
                // refused before the rest is read or kept.
                let line: [UInt8]?
                do { line = try head.feed(buffer.readableBytesView) } catch {
                    throw Stop(response: Self.error(.badRequest, "roster_change_refused", "the header line is longer than 64 KiB", close: true))
                }
                if let line { try checkHeader(line[...], region: region) }
                try handle.write(contentsOf: buffer.readableBytesView)
            }
        } catch let refusal as Stop {
            throw refusal
        } catch {
            logger.error("roster change not received", metadata: ["error": "\(error)"])
            return Self.json(.serviceUnavailable, ["error": "storage_error", "message": "try again later"], headers: [.retryAfter: "30"])
        }
        let verified = await BlockingWork.offload { () -> Result<RosterChange.Verified, RosterChange.Refusal> in
            do throws(RosterChange.Refusal) { return .success(try RosterChange.verify(RosterChange.lines(of: file), trustedKeys: self.rosterKeys)) } catch {
                return .failure(error)
            }
        }
        let change: RosterChange.Verified
        switch verified {
        case .success(let c): change = c
        case .failure(let error): throw Stop(response: Self.error(.badRequest, "roster_change_refused", error.description))
        }
        guard change.region == region else {
            throw Stop(response: Self.error(.badRequest, "roster_change_refused", "the change is for region \(change.region), posted to \(region)"))
        }
        do {
            let queued = try await BlockingWork.offloadWrite { () -> Int64?? in
                if try self.database.rosterChangeApplied(change.changeID) { return .none }
                return .some(try self.database.queueRosterChange(file: file, region: change.region, changeID: change.changeID, now: self.now()))
            }
            guard let queued else {
                throw Stop(response: Self.error(.conflict, "roster_change_refused", RosterChange.Refusal.alreadyApplied(change.changeID).description))
            }
            guard let id = queued else {
                throw Stop(response: Self.error(.conflict, "roster_change_refused", "change \(change.changeID) is already queued"))
            }
            logger.notice("roster change queued for the publisher", metadata: ["change_id": "\(change.changeID)", "inbox_id": "\(id)",
                                                                                "records": "\(change.records)"])
            return Self.json(.accepted, ["queued": change.changeID, "records": change.records])
        } catch let refusal as Stop {
            throw refusal
        } catch {
            logger.error("roster change not queued", metadata: ["error": "\(error)"])
            throw Stop(response: Self.databaseUnavailable())
        }
    }

    /// Returns when a roster change's header names a key trusted for this region; else throws the answer.
    private func checkHeader(_ line: ArraySlice<UInt8>, region: String) throws(Stop) {
        let header: (region: String, changeID: String, issuedAt: String, keyID: String)
        do { header = try RosterChange.header(line) } catch {
            throw Stop(response: Self.error(.badRequest, "roster_change_refused", error.description, close: true))
        }
        guard header.region == region else {
            throw Stop(response: Self.error(.badRequest, "roster_change_refused", "the change is for region \(header.region), posted to \(region)", close: true))
        }
        guard let key = rosterKeys[header.keyID], key.regions.contains(region) else {
            throw Stop(response: Self.error(.badRequest, "roster_change_refused", "roster key \"\(header.keyID)\" is not trusted for region \(region)", close: true))
        }
    }

    /// Device-signature authentication of the certificate routes, as middleware (issue 22):
    /// `certificateCaller`'s device goes on in the context.
    struct CertificateCaller: RouterMiddleware {
        let hub: SettlementHub

        func handle(_ request: Request, context: HubRequestContext,
                    next: (Request, HubRequestContext) async throws -> Response) async throws -> Response {
            var context = context
            context.device = try await hub.certificateCaller(request, context: context, deviceID: context.parameters.get("device_id") ?? "")
            return try await next(request, context)
        }
    }

    /// The device named in the path, registered and active (403 otherwise), which must be the
    /// signer.
    /// - Throws: `Stop` with the answer (a refusal, or `503` when the roster cannot be read).
    func certificateCaller(_ request: Request, context: HubRequestContext, deviceID: String) async throws(Stop) -> Roster.Device {
        guard case .success(let entry) = await requestDevice(deviceID) else { throw Stop(response: Self.databaseUnavailable()) }
        // Sync spec §5: a device that is not active in the roster gets 403.
        guard let entry, entry.status == "active" else {
            throw Stop(response: Self.error(.forbidden, "device_not_active", "device \(deviceID) is not active"))
        }
        _ = try await authenticateSync(request, context: context)
        guard request.headers[.xDeviceID] == deviceID else {
            throw Stop(response: Self.error(.forbidden, "wrong_device", "a device asks for its own certificate only"))
        }
        return entry
    }

    /// `POST /v1/devices/{id}/certificate` (empty body): the publisher issues a certificate
    /// for the registered key; `202`.
    func certificateRequest(_ request: Request, context: HubRequestContext, deviceID: String) async throws -> Response {
        guard let device = context.device else { throw Stop(response: Self.error(.unauthorized, "unknown_device", "the request is not signed")) }
        do {
            try await BlockingWork.offloadWrite {
                try self.database.requestCertificate(deviceID: deviceID, publicKey: Array(device.publicKey.rawRepresentation), now: self.now())
            }
            return Self.json(.accepted, ["status": "requested"])
        } catch {
            throw Stop(response: Self.databaseUnavailable())
        }
    }

    /// `GET /v1/devices/{id}/certificate`: the newest certificate issued since the device's
    /// latest request, or `404` while there is none.
    func certificateFetch(_ request: Request, context: HubRequestContext, deviceID: String) async throws -> Response {
        guard context.device != nil else { throw Stop(response: Self.error(.unauthorized, "unknown_device", "the request is not signed")) }
        let looked = await BlockingWork.offload { Result { try self.database.issuedCertificate(deviceID: deviceID) } }
        guard case .success(let issued) = looked else { throw Stop(response: Self.databaseUnavailable()) }
        guard let cert = issued else {
            throw Stop(response: Self.error(.notFound, "no_certificate", "no certificate newer than the last request yet"))
        }
        return Self.json(.ok, ["certificate": Data(cert).base64EncodedString()])
    }
}
