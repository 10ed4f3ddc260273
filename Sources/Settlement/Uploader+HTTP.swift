import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOSSL
import Synchronization

/// The uploader's HTTP side: a batch's signed request and the hub's raw reply.
extension Uploader {
    // MARK: transport

    struct Reply: Sendable {
        var status: Int
        var retryAfter: String?
        var body: [UInt8]
    }

    func send(_ body: BatchBody) async -> Result<Reply, UploadFailure> {
        let signature: String
        do { signature = try body.signature(with: signingKey) } catch { return .failure(.store("signing failed: \(error)")) }
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "X-Signature", value: signature)
        request.body = .bytes(body.bytes)
        let prepared = request
        let client = self.client
        let timeout = configuration.requestTimeout
        let maxAnswer = configuration.maxAnswerBytes
        do {
            return .success(try await withThrowingTaskGroup(of: Reply?.self) { group in
                group.addTask {
                    let response = try await client.execute(prepared, deadline: .now() + TimeAmount(timeout))
                    var buffer = try await response.body.collect(upTo: maxAnswer)
                    return Reply(status: Int(response.status.code), retryAfter: response.headers.first(name: "Retry-After"),
                                 body: buffer.readBytes(length: buffer.readableBytes) ?? [])
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let answer = first else { throw UploadFailure.timedOut }
                return answer
            })
        } catch let f as UploadFailure {
            return .failure(f)
        } catch let e as HTTPClientError where e == .deadlineExceeded || e == .readTimeout || e == .connectTimeout {
            return .failure(.timedOut)
        } catch is CancellationError {
            return .failure(.cancelled)
        } catch {
            return .failure(.unreachable(String(describing: error)))
        }
    }

    /// The hub's message in a non-200 answer (its `message`/`error` field, or the text), bounded.
    static func message(_ data: [UInt8]) -> String {
        let text = String(decoding: data.prefix(2048), as: UTF8.self)
        if let o = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any],
           let m = (o["message"] as? String) ?? (o["error"] as? String) ?? ((o["error"] as? [String: Any])?["message"] as? String) {
            return String(m.prefix(1024))
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension Uploader {
    /// The HTTP client settings the uploader needs: a refused connection fails at once (no
    /// silent reconnect loop until the deadline), no redirects (a batch is POSTed to the
    /// provisioned hub only), no decompression. `httpClient(hubCAPEM:)` adds the provisioned CA.
    public static func httpClientConfiguration() -> HTTPClient.Configuration {
        var c = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(60)),
                                         decompression: .disabled)
        c.connectionPool.retryConnectionEstablishment = false
        return c
    }

    /// One client per process with `httpClientConfiguration()`, never shut down (like
    /// `HTTPClient.shared`), so an uploader can be made and dropped freely.
    public static let sharedHTTPClient = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                                                    configuration: Uploader.httpClientConfiguration())

    /// The certificates of a provisioned hub CA (PEM, one or more). Throws
    /// `HubCAError` when the text holds no certificate.
    public static func hubCertificates(pem: String) throws -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do { certificates = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)) } catch {
            throw HubCAError(message: "not PEM certificates: \(error)")
        }
        guard !certificates.isEmpty else { throw HubCAError(message: "no certificate in the PEM text") }
        return certificates
    }

    /// The client for a hub: `sharedHTTPClient` without a provisioned CA; with one, a client
    /// that trusts only that CA's certificates (TLS 1.2 or later, host name checked). Made once
    /// per distinct CA text and kept for the process, like the shared one.
    public static func httpClient(hubCAPEM: String?) throws -> HTTPClient {
        guard let pem = hubCAPEM else { return sharedHTTPClient }
        return try pinnedClients.withLock { clients in
            if let c = clients[pem] { return c }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try hubCertificates(pem: pem))
            tls.minimumTLSVersion = .tlsv12
            var configuration = httpClientConfiguration()
            configuration.tlsConfiguration = tls
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            clients[pem] = client
            return client
        }
    }

    private static let pinnedClients = LockedClients()
}

/// A provisioned hub CA that cannot be used.
public struct HubCAError: Error, CustomStringConvertible {
    /// What is wrong with it.
    public var message: String
    /// `hub CA: message`.
    public var description: String { "hub CA: \(message)" }
}

/// The CA-pinned clients, by CA text.
final class LockedClients: Sendable {
    private let clients = Mutex<[String: HTTPClient]>([:])
    func withLock<T: Sendable>(_ body: (inout [String: HTTPClient]) throws -> T) throws -> T {
        try clients.withLock { try body(&$0) }
    }
}

extension TimeAmount {
    init(_ d: Duration) {
        let c = d.components
        self = .nanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
    }
}
