import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The HTTP server of `kioskd` without Hummingbird's `Application`, whose `run()` adds a
/// date-cache service that wakes the process every second to re-format the `Date` header
/// (issue 11: a kiosk at rest has no periodic wake-ups). The `Date` header is formatted per
/// response instead: a screen and a bill intake make a few requests a minute.
/// Otherwise what `Application.run()` does: the router's responder, the request context
/// from the channel, the server name header, and 500 for an error no route turned into a
/// response.
struct QuietServer: Service {
    let responder: RouterResponder<BasicRequestContext>
    let server: HTTPServerBuilder
    let configuration: ServerConfiguration
    let onServerRunning: @Sendable (any Channel) async -> Void
    let logger: Logger

    init(router: Router<BasicRequestContext>, server: HTTPServerBuilder, configuration: ServerConfiguration,
         onServerRunning: @escaping @Sendable (any Channel) async -> Void, logger: Logger) {
        self.responder = router.buildResponder()
        (self.server, self.configuration, self.onServerRunning, self.logger) = (server, configuration, onServerRunning, logger)
    }

    func run() async throws {
        let (responder, logger) = (self.responder, self.logger)
        let serverName = configuration.serverName
        let service = try server.buildServer(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                                             logger: logger) { (request, responseWriter: consuming ResponseWriter, channel) in
            let context = BasicRequestContext(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                throw error
            } catch {
                logger.debug("unrecognised error", metadata: ["error": "\(error)"])
                response = Response(status: .internalServerError, body: .init())
            }
            response.headers[.date] = HTTPDate.format(Date())
            if let serverName { response.headers[.server] = serverName }
            do {
                try await responseWriter.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                // As Application.run(): a parser error now must not become a second response
                // (a 400 after this one's head); the connection is closed instead.
                throw WriteAfterParseError()
            }
        } onServerRunning: { await onServerRunning($0) }
        try await service.run()
    }
}

/// The request body broke off as malformed while the response was being written.
struct WriteAfterParseError: Error {}

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. "Wed, 02 Dec 2026 00:28:53 GMT".
enum HTTPDate {
    static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func format(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%@, %02d %@ %04d %02d:%02d:%02d GMT", days[Int(parts.tm_wday)], parts.tm_mday, months[Int(parts.tm_mon)],
                      parts.tm_year + 1900, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}
