import CPCSCLite
import Foundation
import Logging

/// What happens at the readers.
public enum ReaderEvent: Sendable, Equatable, CustomStringConvertible {
    /// A reader appeared (listed at start, plugged in, or after pcscd came back).
    case readerAdded(String)
    /// A reader went away (unplugged, or pcscd lost).
    case readerRemoved(String)
    /// A card was put on a reader: a tap.
    case cardInserted(reader: String, atr: [UInt8])
    /// A card already lying on a reader when the reader was listed (at start, after pcscd came
    /// back, a reader plugged in again): present, but not a tap.
    case cardFound(reader: String, atr: [UInt8])
    /// The card left the reader (or its reader or pcscd went away).
    case cardRemoved(reader: String)
    /// pcscd went away; readers are unknown until it is back.
    case serviceLost
    /// pcscd is back; reader and card events follow for what is there now.
    case serviceRestored

    /// The event in words, for logs.
    public var description: String {
        switch self {
        case .readerAdded(let r): return "reader added: \(r)"
        case .readerRemoved(let r): return "reader removed: \(r)"
        case .cardInserted(let r, let atr): return "card inserted in \(r), ATR \(atr.hexString)"
        case .cardFound(let r, let atr): return "card found lying in \(r), ATR \(atr.hexString)"
        case .cardRemoved(let r): return "card removed from \(r)"
        case .serviceLost: return "pcscd lost"
        case .serviceRestored: return "pcscd restored"
        }
    }
}

/// Watches readers and cards as an `AsyncSequence` of `ReaderEvent`s.
///
/// Each iteration runs one thread with its own PC/SC context that blocks in
/// `SCardGetStatusChange` (bounded timeout), watching the plug-and-play pseudo-reader
/// for readers coming and going and each reader's event counter, so that a card pulled
/// and put back between two calls is reported as removed then inserted. Ending the
/// iteration (task cancelled, loop left) wakes the thread with `SCardCancel`. When pcscd
/// goes away the watcher reports `.serviceLost`, reconnects with bounded backoff, then
/// reports `.serviceRestored` and the readers and cards it finds.
public struct ReaderWatcher: AsyncSequence, Sendable {
    /// The watcher yields reader events.
    public typealias Element = ReaderEvent
    /// Which readers are watched.
    public var filter: ReaderFilter
    /// Upper bound of one blocking call; only bounds the wait, nothing polls. Each bound that
    /// passes wakes the process (issue 24 item 6: the 30 s this once was made two wake-ups a
    /// minute at rest). Nothing needs the wake-up: pcscd reports readers coming and going,
    /// `SCardCancel` ends the wait at once, and pcscd's death ends it with an error.
    public var blockingTimeoutMilliseconds: UInt32
    /// The bound when pcscd cannot report readers coming and going (its plug-and-play reader
    /// unknown): readers are then listed again at each wake-up, so they come this often.
    public static let relistingTimeoutMilliseconds: UInt32 = 30_000
    /// Where pcscd failures are logged.
    public var logger: Logger

    /// A watcher; one blocking call waits 10 minutes at most unless told otherwise.
    public init(filter: ReaderFilter = .fromEnvironment, blockingTimeoutMilliseconds: UInt32 = 600_000,
                logger: Logger = Logger(label: "smartcard.watcher")) {
        self.filter = filter
        self.blockingTimeoutMilliseconds = blockingTimeoutMilliseconds
        self.logger = logger
    }

    /// Starts a watch of its own (`events()`) and iterates it.
    public func makeAsyncIterator() -> AsyncStream<ReaderEvent>.Iterator {
        events().makeAsyncIterator()
    }

    /// Starts the watch thread and returns its events; ending the stream stops the thread.
    /// Keeps the newest 1,024 events when the reader of the stream falls behind.
    public func events() -> AsyncStream<ReaderEvent> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1024)) { continuation in
            let loop = WatchLoop(watcher: self, continuation: continuation)
            continuation.onTermination = { _ in loop.stop() }
            let thread = Thread { loop.run() }
            thread.name = "pcsc-reader-watcher"
            thread.start()
        }
    }
}

/// `@unchecked Sendable`, and why that is sound: it crosses threads once (created by the
/// stream's builder, then run by its own thread; `stop()` from `onTermination`, any thread).
/// `stopping`, `context` and `finished` are read and written only with `lock` held (`stop`,
/// `cancelAgain`, `isStopping`, `sleepOrStop`, and the assignments in `run`). `tracked`, `pnpName` and `pnpState` are
/// touched only by the watch thread (`run` and what it calls) and by `deinit`, which runs
/// after that thread has let go of the loop. `watcher` and `continuation` are `let`s of
/// `Sendable` types.
private final class WatchLoop: @unchecked Sendable {
    let watcher: ReaderWatcher
    let continuation: AsyncStream<ReaderEvent>.Continuation
    private let lock = NSCondition()
    private var stopping = false
    private var context: PCSCContext?
    /// The loop has ended (set last by `run`): `stop` sends no more cancels.
    private var finished = false

    struct Tracked {
        var name: String
        var cName: UnsafeMutablePointer<CChar>
        var currentState: DWORD
        var present: Bool
    }
    private var tracked: [Tracked] = []
    private var pnpName = strdup(SC.pnpReader)!
    private var pnpState = SC.stateUnaware
    /// pcscd said it has no plug-and-play reader (its state, kept as reported, is unknown): the
    /// watch wakes every `relistingTimeoutMilliseconds`.
    private var relisting: Bool { pnpState & SC.stateUnknown != 0 }

    init(watcher: ReaderWatcher, continuation: AsyncStream<ReaderEvent>.Continuation) {
        self.watcher = watcher
        self.continuation = continuation
    }

    deinit {
        for t in tracked { free(t.cName) }
        free(pnpName)
    }

    func stop() {
        lock.lock()
        stopping = true
        context?.cancel()
        lock.broadcast()
        let done = finished
        lock.unlock()
        if !done { cancelAgain() }
    }

    /// `SCardCancel` ends only a wait already in progress: a stop that lands between the loop's
    /// look at `stopping` and the start of its wait is lost, and the wait would run its whole
    /// bound (10 minutes). So the cancel is sent again every 100 ms until the loop has ended.
    private func cancelAgain() {
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { [self] in
            lock.lock()
            let done = finished
            if !done { context?.cancel() }
            lock.unlock()
            if !done { cancelAgain() }
        }
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// Sleeps up to `seconds`, returning early (true) when stopped.
    private func sleepOrStop(_ seconds: Double) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if stopping { return true }
        _ = lock.wait(until: Date().addingTimeInterval(seconds))
        return stopping
    }

    func run() {
        defer {
            lock.lock(); finished = true; lock.unlock()
            continuation.finish()
        }
        var announcedLoss = false
        var backoff = 0.1
        while !isStopping {
            // (Re)establish a context of our own.
            let ctx: PCSCContext
            do {
                ctx = try PCSCContext()
            } catch {
                if !announcedLoss {
                    watcher.logger.warning("pcscd unavailable", metadata: ["error": "\(error)"])
                    continuation.yield(.serviceLost)
                    announcedLoss = true
                }
                if sleepOrStop(backoff) { return }
                backoff = min(backoff * 2, 2.0)
                continue
            }
            backoff = 0.1
            lock.lock(); context = ctx; let s = stopping; lock.unlock()
            if s { return }
            if announcedLoss {
                continuation.yield(.serviceRestored)
                announcedLoss = false
            }
            let outcome = watch(ctx)
            lock.lock(); context = nil; lock.unlock()
            switch outcome {
            case .stopped: return
            case .serviceLost:
                for t in tracked {
                    if t.present { continuation.yield(.cardRemoved(reader: t.name)) }
                    continuation.yield(.readerRemoved(t.name))
                    free(t.cName)
                }
                tracked = []
                pnpState = SC.stateUnaware
                continuation.yield(.serviceLost)
                announcedLoss = true
            }
        }
    }

    enum Outcome { case stopped, serviceLost }

    private func watch(_ ctx: PCSCContext) -> Outcome {
        if let outcome = relist(ctx) { return outcome }
        while true {
            if isStopping { return .stopped }
            var states = [SCARD_READERSTATE]()
            states.reserveCapacity(tracked.count + 1)
            var pnp = SCARD_READERSTATE()
            pnp.szReader = UnsafePointer(pnpName)
            pnp.dwCurrentState = pnpState
            states.append(pnp)
            for t in tracked {
                var s = SCARD_READERSTATE()
                s.szReader = UnsafePointer(t.cName)
                s.dwCurrentState = t.currentState
                states.append(s)
            }
            let bound = relisting ? min(watcher.blockingTimeoutMilliseconds, ReaderWatcher.relistingTimeoutMilliseconds)
                                  : watcher.blockingTimeoutMilliseconds
            let rv = SCardGetStatusChange(ctx.handle, DWORD(bound), &states, DWORD(states.count))
            if let error = PCSCError(returnValue: rv) {
                switch error {
                case .timeout:
                    // Without pcscd's plug-and-play reader, readers are listed again at each wake-up.
                    if relisting, let outcome = relist(ctx) { return outcome }
                    continue
                case .cancelled: if isStopping { return .stopped } else { continue }
                case .unknownReader, .readerUnavailable:
                    if let outcome = relist(ctx) { return outcome }
                    continue
                default:
                    if error.isServiceGone || !ctx.isValid { return .serviceLost }
                    watcher.logger.error("SCardGetStatusChange failed", metadata: ["error": "\(error)"])
                    if sleepOrStop(1.0) { return .stopped }
                    continue
                }
            }
            // The plug-and-play reader's state is kept as reported, unknown included, so that the
            // next call waits (with the unaware state it answered at once, again and again).
            var readersChanged = states[0].dwEventState & SC.stateChanged != 0
            if readersChanged { pnpState = states[0].dwEventState & ~SC.stateChanged }
            // PnP unsupported: fall back to relisting on every wake-up.
            if relisting { readersChanged = true }
            for i in tracked.indices {
                let ev = states[i + 1].dwEventState
                guard ev & SC.stateChanged != 0 else { continue }
                if ev & (SC.stateUnknown | SC.stateUnavailable | SC.stateIgnore) != 0 {
                    readersChanged = true
                    continue
                }
                update(&tracked[i], eventState: ev, atr: ReaderState(states[i + 1]).atr)
            }
            if readersChanged, let outcome = relist(ctx) { return outcome }
        }
    }

    private func update(_ t: inout Tracked, eventState ev: DWORD, atr: [UInt8]) {
        let nowPresent = ev & SC.statePresent != 0
        let oldCount = t.currentState >> 16 & 0xFFFF
        let newCount = ev >> 16 & 0xFFFF
        if t.present && nowPresent && oldCount != newCount && t.currentState != SC.stateUnaware {
            // Pulled and put back between two calls.
            continuation.yield(.cardRemoved(reader: t.name))
            continuation.yield(.cardInserted(reader: t.name, atr: atr))
        } else if !t.present && nowPresent {
            continuation.yield(.cardInserted(reader: t.name, atr: atr))
        } else if t.present && !nowPresent {
            continuation.yield(.cardRemoved(reader: t.name))
        }
        t.present = nowPresent
        t.currentState = ev & ~SC.stateChanged
    }

    /// Lists readers, reports the ones added and removed, and reads the state of new ones.
    private func relist(_ ctx: PCSCContext) -> Outcome? {
        let names: [String]
        do {
            names = try ctx.readers().filter(watcher.filter.accepts)
        } catch let error as PCSCError {
            if error.isServiceGone || !ctx.isValid { return .serviceLost }
            return nil
        } catch { return nil }
        var kept: [Tracked] = []
        for t in tracked {
            if names.contains(t.name) { kept.append(t); continue }
            if t.present { continuation.yield(.cardRemoved(reader: t.name)) }
            continuation.yield(.readerRemoved(t.name))
            free(t.cName)
        }
        tracked = kept
        for name in names where !tracked.contains(where: { $0.name == name }) {
            continuation.yield(.readerAdded(name))
            var t = Tracked(name: name, cName: strdup(name)!, currentState: SC.stateUnaware, present: false)
            if let state = try? ctx.readerState(name) {
                if state.cardPresent { continuation.yield(.cardFound(reader: name, atr: state.atr)) }
                t.present = state.cardPresent
                var raw = DWORD(state.eventCount) << 16
                if state.cardPresent { raw |= SC.statePresent } else { raw |= SC.stateEmpty }
                if state.mute { raw |= SC.stateMute }
                t.currentState = raw
            }
            tracked.append(t)
        }
        return nil
    }
}
