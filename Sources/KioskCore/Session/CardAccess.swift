import BenefitCard
import Foundation
import SmartCard

/// How a card session reaches the card on a reader: PC/SC in the daemon and the CLI
/// (`PCSCCardAccess`), an emulated card in the engine's unit tests.
public protocol CardAccess: AnyObject {
    /// Runs `body` with the card on `reader`, inside an exclusive transaction.
    /// - Throws: what connecting or `body` throws (`PCSCError`, `CardError`, …).
    func withCard<T>(_ reader: String, _ body: (CardChannel) throws -> T) throws -> T
    /// The card service went away: whatever connection state is held is dropped.
    func reset()
}

extension CardAccess {
    /// Nothing held: nothing to drop.
    public func reset() {}
}

/// PC/SC: one context, made again when pcscd went away, and a connection per session.
/// Not thread-safe: its user confines it (the engine uses it from its serial queue only).
public final class PCSCCardAccess: CardAccess {
    var context: PCSCContext?

    /// No context yet: the first session makes it.
    public init() {}

    /// Connects to the card on `reader` and runs `body` in an exclusive transaction.
    public func withCard<T>(_ reader: String, _ body: (CardChannel) throws -> T) throws -> T {
        if context == nil || context?.isValid == false { context = try PCSCContext() }
        guard let context else { throw CardError.serviceUnavailable }
        let connection = try context.connect(reader: reader)
        return try connection.withTransaction { try body($0) }
    }

    /// pcscd went away: the next session makes a new context.
    public func reset() { context = nil }
}
