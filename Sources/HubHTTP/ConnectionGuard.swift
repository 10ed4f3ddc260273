import Foundation
import HubRules
import HubStore
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Bounds on what one connection may take of the hub (issue 21 item 3: an outsider cannot
/// exhaust it). Per connection: the request's head must have arrived within `headTimeout` of
/// the connection opening or the previous answer (a slowloris trickling header bytes is
/// dropped), and its body within `bodyTimeout` plus a second for every `bodyRate` bytes it
/// declares. Across connections: at most `maxConnections`, of which at most `maxAnonymous`
/// not yet known to be a device's; when the anonymous ones are full, the oldest anonymous
/// connection that has not sent a whole request head yet is closed to let a new one in (so a
/// kiosk still gets through a flood of silent sockets), and a connection that carried an
/// authenticated request keeps its place.
public struct ConnectionLimits: Sendable, Equatable {
    /// A request head is due within this (30 s) of the connection opening or the previous answer.
    public var headTimeout: Duration = .seconds(30)
    /// A body is due within this (30 s), plus a second per `bodyRate` bytes it declares.
    public var bodyTimeout: Duration = .seconds(30)
    /// Bytes a second a body is allowed on top of `bodyTimeout` (a kiosk on a slow link).
    public var bodyRate = 64 * 1024
    /// Open connections a process takes at most (4,096); more are closed at once.
    public var maxConnections = 4096
    /// Of those, at most this many (1,024) not yet known to be a device's.
    public var maxAnonymous = 1024
    /// Connections a device keeps its place with (more of its own count as anonymous).
    public var perDevice = 8
    /// The defaults of platform-trust §3.
    public init() {}
}

/// The hub's connections, counted and ordered by age (one per process, shared by every
/// connection's `ConnectionGuard`).
public final class ConnectionRegistry: Sendable {
    struct Entry {
        var channel: any Channel
        var opened: UInt64
        /// The device whose signed request this connection carried (nil: anonymous).
        var device: String?
        var authenticated: Bool { device != nil }
        var headSeen = false
    }
    struct State {
        var next: UInt64 = 0
        var entries: [ObjectIdentifier: Entry] = [:]
        var dropped = 0
    }
    let limits: ConnectionLimits
    private let state = Mutex(State())

    /// A registry holding connections to `limits`.
    public init(limits: ConnectionLimits) { self.limits = limits }

    /// Open connections now, and of them not yet known to be a device's.
    public var counts: (open: Int, anonymous: Int, dropped: Int) {
        state.withLock { s in (s.entries.count, s.entries.values.filter { !$0.authenticated }.count, s.dropped) }
    }

    /// A new connection: admitted (true), or to be closed at once. May name an older
    /// anonymous connection to close instead (returned in `evict`).
    func admit(_ channel: any Channel) -> (admitted: Bool, evict: (any Channel)?) {
        state.withLock { s in
            if s.entries.count >= limits.maxConnections { s.dropped += 1; return (false, nil) }
            var evict: (any Channel)?
            let anonymous = s.entries.filter { !$0.value.authenticated }
            if anonymous.count >= limits.maxAnonymous {
                // The oldest that has not sent a whole head yet; else the oldest anonymous.
                let victim = anonymous.filter { !$0.value.headSeen }.min { $0.value.opened < $1.value.opened }
                    ?? anonymous.min { $0.value.opened < $1.value.opened }
                if let victim {
                    evict = victim.value.channel
                    s.entries[victim.key] = nil
                    s.dropped += 1
                }
            }
            s.next += 1
            s.entries[ObjectIdentifier(channel)] = Entry(channel: channel, opened: s.next)
            return (true, evict)
        }
    }

    func headSeen(_ channel: any Channel) {
        state.withLock { $0.entries[ObjectIdentifier(channel)]?.headSeen = true }
    }

    /// The connection carried a request whose signature verified, as `deviceID`'s: it keeps
    /// its place against a flood of anonymous ones, unless that device already holds
    /// `limits.perDevice` such connections (one kiosk cannot take the room kept for all).
    func authenticated(_ channel: any Channel, device deviceID: String) {
        state.withLock { s in
            let id = ObjectIdentifier(channel)
            guard s.entries[id] != nil, s.entries[id]?.device == nil else { return }
            guard s.entries.values.filter({ $0.device == deviceID }).count < limits.perDevice else { return }
            s.entries[id]?.device = deviceID
        }
    }

    func closed(_ channel: any Channel) {
        _ = state.withLock { $0.entries.removeValue(forKey: ObjectIdentifier(channel)) }
    }
}

/// One connection's deadlines and its place in the registry (a NIO handler, added after the
/// HTTP codec; all its state lives on its channel's event loop).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let registry: ConnectionRegistry
    private var deadline: Scheduled<Void>?
    private var reading = false

    init(registry: ConnectionRegistry) { self.registry = registry }

    func handlerAdded(context: ChannelHandlerContext) {
        let (admitted, evict) = registry.admit(context.channel)
        evict?.close(promise: nil)
        guard admitted else { context.close(promise: nil); return }
        arm(context, registry.limits.headTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        registry.closed(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        registry.closed(context.channel)
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext, _ after: Duration) {
        deadline?.cancel()
        let (seconds, overflow) = after.components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let nanos = overflow ? Int64.max / 2 : seconds + after.components.attoseconds / 1_000_000_000
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(nanos)) {
            loopBound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            reading = true
            registry.headSeen(context.channel)
            // The declared length is the client's word: bounded before it is used (the largest
            // body the hub reads at all is 64 MiB), so no header can overflow the deadline.
            let length = min(max(0, head.headerFields[.contentLength].flatMap(Int.init) ?? 0), 64 << 20)
            arm(context, registry.limits.bodyTimeout + .seconds(length / max(1, registry.limits.bodyRate)))
        case .end:
            reading = false
            // Answering takes what it takes (a long poll: minutes); no deadline meanwhile.
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .end:
            // The next request's head is due within the head timeout (the idle time included).
            if !reading { arm(context, registry.limits.headTimeout) }
        default:
            break
        }
        context.write(data, promise: promise)
    }
}

/// Per-device limits (issue 21 item 3): devices sit behind a load balancer, so limits are
/// per device, counted only once the request is known to be the device's (signature
/// verified), so nobody can spend a genuine device's allowance by naming it.
final class DeviceLimiter: Sendable {
    struct Bucket { var tokens: Double; var at: ContinuousClock.Instant }
    struct State {
        var batches: [String: Bucket] = [:]
        var longPolls: [String: Int] = [:]
    }
    private let state = Mutex(State())

    /// Takes one batch request from the device's allowance (`perSecond`, a second's worth at
    /// once); nil when allowed, else the seconds to wait.
    func batch(_ deviceID: String, perSecond: Int, now: ContinuousClock.Instant = .now) -> Int? {
        state.withLock { s in
            let rate = Double(max(1, perSecond))
            var b = s.batches[deviceID] ?? Bucket(tokens: rate, at: now)
            let elapsed = now - b.at
            b.tokens = min(rate, b.tokens + rate * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
            b.at = now
            if s.batches.count > 100_000 { s.batches = s.batches.filter { now - $0.value.at < .seconds(10) } }
            guard b.tokens >= 1 else { s.batches[deviceID] = b; return 1 }
            b.tokens -= 1
            s.batches[deviceID] = b
            return nil
        }
    }

    /// A long poll begins, when fewer than `limit` of the device's are held.
    func beginLongPoll(_ deviceID: String, limit: Int) -> Bool {
        state.withLock { s in
            let held = s.longPolls[deviceID] ?? 0
            guard held < limit else { return false }
            s.longPolls[deviceID] = held + 1
            return true
        }
    }

    /// Long polls held now, every device's.
    func longPollCount() -> Int { state.withLock { $0.longPolls.values.reduce(0, +) } }

    func endLongPoll(_ deviceID: String) {
        state.withLock { s in
            let held = (s.longPolls[deviceID] ?? 1) - 1
            s.longPolls[deviceID] = held > 0 ? held : nil
        }
    }
}

/// The hub's request context: Hummingbird's, with the request's channel, so a handler that
/// verifies a device's signature tells the connection registry at once (issue 21 item 3: the
/// connection keeps its place from then on, a long poll included).
public struct HubRequestContext: RequestContext {
    /// Hummingbird's own context.
    public var coreContext: CoreRequestContextStorage
    /// The connection the request came on.
    public let channel: any Channel
    /// The device whose signature the sync middleware verified (`SyncSignature`), for the
    /// sync routes; nil elsewhere.
    package var device: Roster.Device?
    /// The batch whose signature `BatchSignature` verified, for the batch route; nil elsewhere.
    package var batch: SettlementHub.VerifiedBatch?
    /// The context of a request arriving on `source`'s channel.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
