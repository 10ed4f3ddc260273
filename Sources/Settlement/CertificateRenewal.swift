import AsyncHTTPClient
import Crypto
import KioskProtocol
import Foundation
import KioskStore
import NIOCore

/// What a renewal round did (sync spec §5).
public enum RenewalOutcome: Sendable, Equatable, CustomStringConvertible {
    /// More than 30 days left: nothing asked.
    case notDue
    /// The hub took the request (`202`); the certificate comes on a later round.
    case requested
    /// A new certificate was fetched, checked and installed; its description.
    case installed(String)
    /// The hub has one, but it is not for this device or not newer than the one it holds.
    case refused(String)
    /// The hub could not be asked, or answered otherwise than expected.
    case failed(SyncFailure)

    /// The round's result in one line.
    public var description: String {
        switch self {
        case .notDue: return "the certificate has more than 30 days left: nothing to renew"
        case .requested: return "certificate requested: the platform issues it; fetched on the next round"
        case .installed(let c): return "new certificate installed: \(c)"
        case .refused(let why): return "the hub's certificate was not installed: \(why)"
        case .failed(let f): return "renewal failed: \(f)"
        }
    }
}

/// A kiosk renews its device certificate through the hub on its own (sync spec §5): when
/// less than 30 days are left (or it has none) it fetches a newer one, and asks for one
/// when the hub has none yet. Every certificate is checked by `install` (the device-CA
/// keys from provisioning, its own key and id, at most 90 days) before it is used.
public struct CertificateRenewal: Sendable {
    /// The hub and its timeouts (the sync client's).
    public let configuration: SyncConfiguration
    /// The device renewing.
    public let device: DeviceContext
    let signingKey: Curve25519.Signing.PrivateKey
    let client: HTTPClient
    let environment: UploaderEnvironment

    /// A renewal client signing its requests with the device key (sync spec §2).
    public init(configuration: SyncConfiguration, device: DeviceContext, signingKey: Curve25519.Signing.PrivateKey,
                httpClient: HTTPClient = Uploader.sharedHTTPClient, environment: UploaderEnvironment = .live) {
        self.configuration = configuration
        self.device = device
        self.signingKey = signingKey
        self.client = httpClient
        self.environment = environment
    }

    /// Renewal is due when the certificate runs out within 30 days, or there is none.
    public static func isDue(notAfter: Date?, now: Date) -> Bool {
        guard let notAfter else { return true }
        return notAfter.timeIntervalSince(now) < 30 * 86_400
    }

    /// One round. `current` is the installed certificate's end (nil: none); `install` checks
    /// and installs bytes, returning a description, or throws why not.
    public func round(notAfter current: Date?, force: Bool = false,
                      install: @Sendable ([UInt8]) throws -> (notAfter: Date, description: String)) async -> RenewalOutcome {
        let now = environment.now()
        guard force || Self.isDue(notAfter: current, now: now) else { return .notDue }
        let path = "/v1/devices/\(device.deviceID)/certificate"
        switch await call("GET", path) {
        case .failure(let f): return .failed(f)
        case .success(let (status, body)):
            if status == 200 {
                guard let o = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any], let text = o["certificate"] as? String,
                      let bytes = Data(base64Encoded: text) else {
                    return .failed(.nonsense("the certificate answer is not {\"certificate\": base64}"))
                }
                do {
                    let installed = try install(Array(bytes))
                    if let current, installed.notAfter <= current {
                        // Not newer than what the kiosk holds: ask for a new one.
                        return await request(path)
                    }
                    return .installed(installed.description)
                } catch {
                    return .refused("\(error)")
                }
            }
            if status == 404 { return await request(path) }
            return .failed(failure(status: status, body: body))
        }
    }

    private func request(_ path: String) async -> RenewalOutcome {
        switch await call("POST", path) {
        case .failure(let f): return .failed(f)
        case .success(let (status, body)):
            return status == 202 || status == 200 ? .requested : .failed(failure(status: status, body: body))
        }
    }

    private func failure(status: Int, body: [UInt8]) -> SyncFailure {
        SyncFailure.answer(status: status, retryAfter: nil, body: body, to: "a certificate request")
    }

    private func call(_ method: String, _ path: String) async -> Result<(Int, [UInt8]), SyncFailure> {
        let request = SnapshotSync.signed(method, path, configuration: configuration, deviceID: device.deviceID, key: signingKey,
                                          now: environment.now())
        do {
            let response = try await client.execute(request, timeout: TimeAmount(configuration.requestTimeout))
            var buffer = try await response.body.collect(upTo: 64 << 10)
            return .success((Int(response.status.code), buffer.readBytes(length: buffer.readableBytes) ?? []))
        } catch is CancellationError {
            return .failure(.cancelled)
        } catch {
            return .failure(.unreachable(String(describing: error).prefix(300).description))
        }
    }
}
