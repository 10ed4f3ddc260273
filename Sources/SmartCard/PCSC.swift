import CPCSCLite
import Foundation

/// Constants of pcsc-lite's `pcsclite.h`, typed once here (they import as `Int32`).
enum SC {
    static let scopeSystem = DWORD(2)            // SCARD_SCOPE_SYSTEM
    static let shareExclusive = DWORD(1)         // SCARD_SHARE_EXCLUSIVE
    static let shareShared = DWORD(2)            // SCARD_SHARE_SHARED
    static let protocolT0 = DWORD(1)             // SCARD_PROTOCOL_T0
    static let protocolT1 = DWORD(2)             // SCARD_PROTOCOL_T1
    static let leaveCard = DWORD(0)              // SCARD_LEAVE_CARD
    static let resetCard = DWORD(1)              // SCARD_RESET_CARD
    static let stateUnaware = DWORD(0x0000)
    static let stateIgnore = DWORD(0x0001)
    static let stateChanged = DWORD(0x0002)
    static let stateUnknown = DWORD(0x0004)
    static let stateUnavailable = DWORD(0x0008)
    static let stateEmpty = DWORD(0x0010)
    static let statePresent = DWORD(0x0020)
    static let stateMute = DWORD(0x0200)
    static let pnpReader = "\\\\?PnP?\\Notification"
}

/// Which readers a terminal uses. vpcd adds two "Virtual PCD" readers to every pcscd
/// on a machine where it is installed; production ignores them unless told otherwise.
public struct ReaderFilter: Sendable {
    /// How the names of vpcd's readers begin.
    public static let virtualPrefix = "Virtual PCD"
    /// Whether vpcd's "Virtual PCD" readers are used.
    public var allowVirtual: Bool
    /// Only this reader (a kiosk with two readers, two daemons on one machine).
    public var only: String?
    /// A filter; with `only`, every other reader is ignored, virtual or not.
    public init(allowVirtual: Bool, only: String? = nil) { self.allowVirtual = allowVirtual; self.only = only }
    /// `BENEFIT_KIOSK_VIRTUAL_READERS=1` allows virtual readers (demo, tests, training).
    public static var fromEnvironment: ReaderFilter {
        ReaderFilter(allowVirtual: ProcessInfo.processInfo.environment["BENEFIT_KIOSK_VIRTUAL_READERS"] == "1")
    }
    /// Whether the terminal uses the reader of this name.
    public func accepts(_ reader: String) -> Bool {
        if let only { return reader == only }
        return allowVirtual || !reader.hasPrefix(ReaderFilter.virtualPrefix)
    }
}

/// The transmission protocol of a connection: T=0 or T=1.
public enum CardProtocol: Sendable, Equatable {
    case t0, t1
    var dword: DWORD { self == .t0 ? SC.protocolT0 : SC.protocolT1 }
}

/// How a connection shares its reader with other applications (`SCARD_SHARE_*`).
public enum ShareMode: Sendable {
    /// Other applications may connect too; use `withTransaction` for exclusive use.
    case shared
    /// No other application may connect while this connection lives.
    case exclusive
}

/// One PC/SC resource-manager context (`SCardEstablishContext`). Not to be shared
/// between threads except for `cancel()`, which exists to be called from another thread.
/// (`Sendable` is checked: the one stored property is an immutable handle. That pcsc-lite
/// serialises calls on one context is pcsc-lite's promise, not Swift's.)
public final class PCSCContext: Sendable {
    let handle: SCARDCONTEXT

    /// Wraps `SCardEstablishContext(SCARD_SCOPE_SYSTEM)`. Throws `.noService` when pcscd is not running.
    public init() throws {
        var ctx: SCARDCONTEXT = 0
        try check(SCardEstablishContext(SC.scopeSystem, nil, nil, &ctx))
        handle = ctx
    }

    deinit { SCardReleaseContext(handle) }

    /// Wraps `SCardIsValidContext`: false once pcscd has gone away.
    public var isValid: Bool { SCardIsValidContext(handle) == 0 }

    /// Wraps `SCardCancel`: wakes a blocking `SCardGetStatusChange` on this context.
    public func cancel() { _ = SCardCancel(handle) }

    /// Wraps `SCardListReaders`. No reader is an empty list, not an error.
    public func readers() throws -> [String] {
        var length: DWORD = 0
        var rv = SCardListReaders(handle, nil, nil, &length)
        if PCSCError(returnValue: rv) == .noReadersAvailable { return [] }
        try check(rv)
        var buffer = [CChar](repeating: 0, count: Int(length))
        rv = SCardListReaders(handle, nil, &buffer, &length)
        if PCSCError(returnValue: rv) == .noReadersAvailable { return [] }
        try check(rv)
        return PCSCContext.splitMultiString(buffer)
    }

    static func splitMultiString(_ buffer: [CChar]) -> [String] {
        var out: [String] = []
        var current: [UInt8] = []
        for c in buffer {
            if c == 0 {
                if current.isEmpty { break }
                out.append(String(decoding: current, as: UTF8.self))
                current = []
            } else {
                current.append(UInt8(bitPattern: c))
            }
        }
        return out
    }

    /// Wraps `SCardConnect` with T=0 or T=1, whichever the card offers.
    public func connect(reader: String, share: ShareMode = .shared) throws -> CardConnection {
        try CardConnection(context: self, reader: reader, share: share)
    }

    /// Blocks in `SCardGetStatusChange` until the reader holds a card (`present`) or not,
    /// or `timeout` passes. Returns whether the wanted state was reached. No polling.
    public func waitForCard(in reader: String, present: Bool, timeout: TimeInterval) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        return try reader.withCString { name -> Bool in
            var state = SCARD_READERSTATE()
            state.szReader = name
            state.dwCurrentState = SC.stateUnaware
            while true {
                let remaining = deadline.timeIntervalSinceNow
                let ms = remaining <= 0 ? DWORD(0) : DWORD(min(remaining, 3600) * 1000)
                let rv = SCardGetStatusChange(handle, ms, &state, 1)
                if PCSCError(returnValue: rv) == .timeout { return false }
                try check(rv)
                let isPresent = state.dwEventState & SC.statePresent != 0 && state.dwEventState & SC.stateMute == 0
                if isPresent == present { return true }
                if remaining <= 0 { return false }
                state.dwCurrentState = state.dwEventState & ~SC.stateChanged
            }
        }
    }

    /// The state of one reader right now (`SCardGetStatusChange` with a zero timeout).
    public func readerState(_ reader: String) throws -> ReaderState {
        try reader.withCString { name -> ReaderState in
            var state = SCARD_READERSTATE()
            state.szReader = name
            state.dwCurrentState = SC.stateUnaware
            try check(SCardGetStatusChange(handle, 0, &state, 1))
            return ReaderState(state)
        }
    }
}

/// What a reader holds.
public struct ReaderState: Sendable, Equatable {
    /// Whether a card is in the reader.
    public var cardPresent: Bool
    /// Whether the card is mute: present but not answering (`SCARD_STATE_MUTE`).
    public var mute: Bool
    /// The card's ATR; empty when none.
    public var atr: [UInt8]
    /// pcsc-lite's per-reader event counter (card insertions and removals).
    public var eventCount: Int

    init(_ s: SCARD_READERSTATE) {
        cardPresent = s.dwEventState & SC.statePresent != 0
        mute = s.dwEventState & SC.stateMute != 0
        eventCount = Int(s.dwEventState >> 16 & 0xFFFF)
        var atr = s.rgbAtr
        let count = min(Int(s.cbAtr), MemoryLayout.size(ofValue: atr))
        self.atr = withUnsafeBytes(of: &atr) { Array($0.prefix(count)) }
    }
}

/// One connection to the card in one reader (`SCardConnect` … `SCardDisconnect`).
/// Its transmit follows card spec §1 (61xx GET RESPONSE, 6Cxx retry).
public final class CardConnection: CardChannel, RawCardChannel {
    /// The reader's name.
    public let reader: String
    /// The protocol the connection uses (T=0 or T=1), set again by `reconnect`.
    public private(set) var activeProtocol: CardProtocol
    private let context: PCSCContext
    private var handle: SCARDHANDLE = 0
    private var inTransaction = false
    private var receiveBuffer = [UInt8](repeating: 0, count: 258 + 16)

    init(context: PCSCContext, reader: String, share: ShareMode) throws {
        self.context = context
        self.reader = reader
        var proto: DWORD = 0
        var h: SCARDHANDLE = 0
        try check(SCardConnect(context.handle, reader,
                               share == .exclusive ? SC.shareExclusive : SC.shareShared,
                               SC.protocolT0 | SC.protocolT1, &h, &proto))
        handle = h
        activeProtocol = proto == SC.protocolT0 ? .t0 : .t1
    }

    deinit { SCardDisconnect(handle, SC.leaveCard) }

    /// Wraps `SCardTransmit`: the bytes as they are, no transport rules.
    public func transmitRaw(_ command: [UInt8]) throws -> [UInt8] {
        var pci = SCARD_IO_REQUEST(dwProtocol: activeProtocol.dword,
                                   cbPciLength: DWORD(MemoryLayout<SCARD_IO_REQUEST>.size))
        var length = DWORD(receiveBuffer.count)
        let rv = command.withUnsafeBufferPointer { cmd in
            receiveBuffer.withUnsafeMutableBufferPointer { rcv in
                SCardTransmit(handle, &pci, cmd.baseAddress, DWORD(cmd.count), nil, rcv.baseAddress, &length)
            }
        }
        let error = PCSCError(returnValue: rv)
        if error == nil && length >= 2 { return Array(receiveBuffer[0..<Int(length)]) }
        // A failed or empty exchange: if the card has left (or leaves within a moment, as
        // the reader notices), report it gone; a half-finished exchange is never success.
        if error?.isCardGone == true || cardLeft() { throw PCSCError.removedCard }
        if let error { throw error }
        return Array(receiveBuffer[0..<Int(length)])
    }

    private func cardLeft() -> Bool {
        (try? context.waitForCard(in: reader, present: false, timeout: 1.5)) ?? true
    }

    /// Sends one command with the transport rules of card spec §1 applied.
    public func transmit(_ command: CommandAPDU) throws -> ResponseAPDU {
        try TransportRules.exchange(command, over: self)
    }

    /// Runs `body` inside `SCardBeginTransaction` … `SCardEndTransaction`: no other
    /// application talks to the card meanwhile. Transactions do not nest.
    public func withTransaction<T>(_ body: (CardConnection) throws -> T) throws -> T {
        precondition(!inTransaction, "card transactions do not nest")
        try check(SCardBeginTransaction(handle))
        inTransaction = true
        defer {
            inTransaction = false
            _ = SCardEndTransaction(handle, SC.leaveCard)
        }
        return try body(self)
    }

    /// Wraps `SCardStatus`: the card's ATR now. Throws `.removedCard` when it left.
    public func atr() throws -> [UInt8] {
        var state: DWORD = 0, proto: DWORD = 0
        var atr = [UInt8](repeating: 0, count: 33)
        var atrLen = DWORD(atr.count)
        var nameLen: DWORD = 0
        try check(SCardStatus(handle, nil, &nameLen, &state, &proto, &atr, &atrLen))
        return Array(atr.prefix(Int(atrLen)))
    }

    /// Wraps `SCardReconnect` with a card reset, after `.resetCard`.
    public func reconnect() throws {
        var proto: DWORD = 0
        try check(SCardReconnect(handle, SC.shareShared, SC.protocolT0 | SC.protocolT1, SC.resetCard, &proto))
        activeProtocol = proto == SC.protocolT0 ? .t0 : .t1
    }
}
