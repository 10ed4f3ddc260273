import Foundation
import Hummingbird
import KioskCore

// What every controller of the local API shares: JSON answers, the one error mapping, the
// bill token and the screen's session, bounded JSON bodies.

func json(_ status: HTTPResponse.Status, _ object: Any, headers: HTTPFields = [:]) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    var fields = headers
    fields[.contentType] = "application/json; charset=utf-8"
    fields[.cacheControl] = "no-store"
    return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// An outcome of the one mapping (`Outcomes`) as an HTTP answer.
func failure(_ error: Error) -> Response {
    if let e = error as? Engine.ActionError { return json(.init(code: e.httpStatus), ["error": e.description]) }
    let r = Outcomes.report(error)
    return json(.init(code: r.httpStatus), ["error": r.code, "message": r.message, "detail": r.detail])
}

/// 401 unless the request carries one of `tokens` as `Authorization: Bearer …`.
func unauthorised(_ request: Request, accepting tokens: [String]) -> Response? {
    guard let presented = BearerToken.presented(request.headers[.authorization]),
          tokens.contains(where: { BearerToken.same(presented, $0) }) else {
        return json(.unauthorized, ["error": "Authorization: Bearer <bill API token> is required (kioskctl bill-api-token)"],
                    headers: [.wwwAuthenticate: "Bearer realm=\"kioskd\""])
    }
    return nil
}

/// A JSON body: `Content-Type: application/json` (415), at most `limit` bytes (413).
func jsonBody(_ request: Request, limit: Int) async -> Result<[UInt8], HTTPError> {
    guard request.headers[.contentType].flatMap(MediaType.init(from:)).map({ $0.isType(.applicationJson) }) == true else {
        return .failure(HTTPError(.unsupportedMediaType, message: "Content-Type must be application/json"))
    }
    if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
        return .failure(HTTPError(.contentTooLarge, message: "the body is \(length) bytes; at most \(limit)"))
    }
    do {
        let buffer = try await request.body.collect(upTo: limit)
        return .success(Array(buffer: buffer))
    } catch {
        return .failure(HTTPError(.contentTooLarge, message: "the body is larger than \(limit) bytes"))
    }
}

/// 401 unless the request comes from the screen's own session (issue 20 item 6).
func notTheScreen(_ request: Request, _ session: ScreenSession) -> Response? {
    session.holds(request.headers[.cookie]) ? nil
        : json(.unauthorized, ["error": "only the kiosk's own screen may do this (its session: kioskctl screen-url)"])
}
