import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a kiosk will not use a hub URL (upload spec §2).
public enum HubURLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not a URL with a scheme and a host.
    case notAURL(String)
    /// A scheme other than `https` (or `http` on loopback).
    case unsupportedScheme(url: String, scheme: String)
    /// Plain `http` to a host that is not loopback: records would cross the network unprotected.
    case plainHTTPNotLoopback(url: String, host: String)

    /// The refusal in one line, saying what to use instead.
    public var description: String {
        switch self {
        case .notAURL(let u): return "hub URL \"\(u)\" is not a URL with a scheme and a host"
        case .unsupportedScheme(let u, let s): return "hub URL \"\(u)\": scheme \"\(s)\" is not https"
        case .plainHTTPNotLoopback(let u, let h):
            return "hub URL \"\(u)\": plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost), not \(h); use https"
        }
    }
}

/// Upload spec §2: the hub URL from provisioning is `https`; a plain `http` URL is refused
/// unless its host is a loopback address (`127.0.0.0/8`, `::1`, `localhost`), for tests and demos.
public enum HubURL {
    /// The URL if a kiosk may use it; otherwise why not. Provisioning and the uploader both call it.
    public static func check(_ text: String) throws(HubURLError) -> URL {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              let host = components.host, !host.isEmpty, let url = components.url else {
            throw .notAURL(text)
        }
        switch scheme {
        case "https":
            return url
        case "http":
            guard isLoopback(host: host) else { throw .plainHTTPNotLoopback(url: text, host: host) }
            return url
        default:
            throw .unsupportedScheme(url: text, scheme: scheme)
        }
    }

    /// `localhost`, an IPv4 address in `127.0.0.0/8` (dotted quad), or the IPv6 loopback
    /// `::1` in any spelling (with or without brackets).
    public static func isLoopback(host: String) -> Bool {
        var h = host.lowercased()
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        if h.hasSuffix(".") && !h.hasSuffix("..") { h.removeLast() }
        if h == "localhost" { return true }
        if let quad = dottedQuad(h) { return quad[0] == 127 }
        var v6 = in6_addr()
        guard h.contains(":"), inet_pton(AF_INET6, h, &v6) == 1 else { return false }
        return withUnsafeBytes(of: &v6) { bytes in bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1 }
    }

    /// Four decimal parts 0–255 without leading zeros (no `127.1`, no octal), or nil.
    static func dottedQuad(_ s: String) -> [Int]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [Int] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), p == "0" || !p.hasPrefix("0"),
                  let v = Int(p), v <= 255 else { return nil }
            out.append(v)
        }
        return out
    }
}
