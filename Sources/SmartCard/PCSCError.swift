/// Every `SCARD_*` return code of pcsc-lite as one typed error. Code above this layer
/// switches on the case, never on text.
public enum PCSCError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    case internalError              // SCARD_F_INTERNAL_ERROR
    case cancelled                  // SCARD_E_CANCELLED
    case invalidHandle              // SCARD_E_INVALID_HANDLE
    case invalidParameter           // SCARD_E_INVALID_PARAMETER
    case invalidTarget              // SCARD_E_INVALID_TARGET
    case noMemory                   // SCARD_E_NO_MEMORY
    case waitedTooLong              // SCARD_F_WAITED_TOO_LONG
    case insufficientBuffer         // SCARD_E_INSUFFICIENT_BUFFER
    case unknownReader              // SCARD_E_UNKNOWN_READER
    case timeout                    // SCARD_E_TIMEOUT
    case sharingViolation           // SCARD_E_SHARING_VIOLATION
    case noSmartcard                // SCARD_E_NO_SMARTCARD
    case unknownCard                // SCARD_E_UNKNOWN_CARD
    case cantDispose                // SCARD_E_CANT_DISPOSE
    case protocolMismatch           // SCARD_E_PROTO_MISMATCH
    case notReady                   // SCARD_E_NOT_READY
    case invalidValue               // SCARD_E_INVALID_VALUE
    case systemCancelled            // SCARD_E_SYSTEM_CANCELLED
    case communicationError         // SCARD_F_COMM_ERROR
    case unknownError               // SCARD_F_UNKNOWN_ERROR
    case invalidATR                 // SCARD_E_INVALID_ATR
    case notTransacted              // SCARD_E_NOT_TRANSACTED
    case readerUnavailable          // SCARD_E_READER_UNAVAILABLE
    case shutdown                   // SCARD_P_SHUTDOWN
    case pciTooSmall                // SCARD_E_PCI_TOO_SMALL
    case readerUnsupported          // SCARD_E_READER_UNSUPPORTED
    case duplicateReader            // SCARD_E_DUPLICATE_READER
    case cardUnsupported            // SCARD_E_CARD_UNSUPPORTED
    case noService                  // SCARD_E_NO_SERVICE
    case serviceStopped             // SCARD_E_SERVICE_STOPPED
    case unexpected                 // SCARD_E_UNEXPECTED / SCARD_E_UNSUPPORTED_FEATURE (same code)
    case iccInstallation            // SCARD_E_ICC_INSTALLATION
    case iccCreateOrder             // SCARD_E_ICC_CREATEORDER
    case dirNotFound                // SCARD_E_DIR_NOT_FOUND
    case fileNotFound               // SCARD_E_FILE_NOT_FOUND
    case noDir                      // SCARD_E_NO_DIR
    case noFile                     // SCARD_E_NO_FILE
    case noAccess                   // SCARD_E_NO_ACCESS
    case writeTooMany               // SCARD_E_WRITE_TOO_MANY
    case badSeek                    // SCARD_E_BAD_SEEK
    case invalidCHV                 // SCARD_E_INVALID_CHV
    case unknownResourceManager     // SCARD_E_UNKNOWN_RES_MNG
    case noSuchCertificate          // SCARD_E_NO_SUCH_CERTIFICATE
    case certificateUnavailable     // SCARD_E_CERTIFICATE_UNAVAILABLE
    case noReadersAvailable         // SCARD_E_NO_READERS_AVAILABLE
    case communicationDataLost      // SCARD_E_COMM_DATA_LOST
    case noKeyContainer             // SCARD_E_NO_KEY_CONTAINER
    case serverTooBusy              // SCARD_E_SERVER_TOO_BUSY
    case unsupportedCard            // SCARD_W_UNSUPPORTED_CARD
    case unresponsiveCard           // SCARD_W_UNRESPONSIVE_CARD
    case unpoweredCard              // SCARD_W_UNPOWERED_CARD
    case resetCard                  // SCARD_W_RESET_CARD
    case removedCard                // SCARD_W_REMOVED_CARD
    case securityViolation          // SCARD_W_SECURITY_VIOLATION
    case wrongCHV                   // SCARD_W_WRONG_CHV
    case chvBlocked                 // SCARD_W_CHV_BLOCKED
    case endOfFile                  // SCARD_W_EOF
    case cancelledByUser            // SCARD_W_CANCELLED_BY_USER
    case cardNotAuthenticated       // SCARD_W_CARD_NOT_AUTHENTICATED
    /// A code pcsc-lite does not document.
    case other(code: UInt32)

    static let table: [UInt32: PCSCError] = [
        0x8010_0001: .internalError, 0x8010_0002: .cancelled, 0x8010_0003: .invalidHandle,
        0x8010_0004: .invalidParameter, 0x8010_0005: .invalidTarget, 0x8010_0006: .noMemory,
        0x8010_0007: .waitedTooLong, 0x8010_0008: .insufficientBuffer, 0x8010_0009: .unknownReader,
        0x8010_000A: .timeout, 0x8010_000B: .sharingViolation, 0x8010_000C: .noSmartcard,
        0x8010_000D: .unknownCard, 0x8010_000E: .cantDispose, 0x8010_000F: .protocolMismatch,
        0x8010_0010: .notReady, 0x8010_0011: .invalidValue, 0x8010_0012: .systemCancelled,
        0x8010_0013: .communicationError, 0x8010_0014: .unknownError, 0x8010_0015: .invalidATR,
        0x8010_0016: .notTransacted, 0x8010_0017: .readerUnavailable, 0x8010_0018: .shutdown,
        0x8010_0019: .pciTooSmall, 0x8010_001A: .readerUnsupported, 0x8010_001B: .duplicateReader,
        0x8010_001C: .cardUnsupported, 0x8010_001D: .noService, 0x8010_001E: .serviceStopped,
        0x8010_001F: .unexpected, 0x8010_0020: .iccInstallation, 0x8010_0021: .iccCreateOrder,
        0x8010_0023: .dirNotFound, 0x8010_0024: .fileNotFound, 0x8010_0025: .noDir,
        0x8010_0026: .noFile, 0x8010_0027: .noAccess, 0x8010_0028: .writeTooMany,
        0x8010_0029: .badSeek, 0x8010_002A: .invalidCHV, 0x8010_002B: .unknownResourceManager,
        0x8010_002C: .noSuchCertificate, 0x8010_002D: .certificateUnavailable,
        0x8010_002E: .noReadersAvailable, 0x8010_002F: .communicationDataLost,
        0x8010_0030: .noKeyContainer, 0x8010_0031: .serverTooBusy,
        0x8010_0065: .unsupportedCard, 0x8010_0066: .unresponsiveCard, 0x8010_0067: .unpoweredCard,
        0x8010_0068: .resetCard, 0x8010_0069: .removedCard, 0x8010_006A: .securityViolation,
        0x8010_006B: .wrongCHV, 0x8010_006C: .chvBlocked, 0x8010_006D: .endOfFile,
        0x8010_006E: .cancelledByUser, 0x8010_006F: .cardNotAuthenticated,
    ]

    /// The error for a pcsc-lite return value, or nil for `SCARD_S_SUCCESS`.
    public init?(returnValue: Int) {
        let code = UInt32(truncatingIfNeeded: returnValue)
        if code == 0 { return nil }
        self = PCSCError.table[code] ?? .other(code: code)
    }

    /// The `SCARD_*` code this error stands for.
    public var code: UInt32 {
        if case .other(let c) = self { return c }
        return PCSCError.table.first(where: { $0.value == self })!.key
    }

    /// The card left the reader, was reset or lost power: whatever was in flight did not finish.
    public var isCardGone: Bool {
        switch self {
        case .removedCard, .resetCard, .noSmartcard, .unpoweredCard, .unresponsiveCard: return true
        default: return false
        }
    }

    /// The reader itself went away.
    public var isReaderGone: Bool {
        switch self {
        case .readerUnavailable, .unknownReader, .noReadersAvailable: return true
        default: return false
        }
    }

    /// pcscd is not running or stopped: reconnect when it comes back.
    public var isServiceGone: Bool {
        switch self {
        case .noService, .serviceStopped, .shutdown, .communicationError, .invalidHandle: return true
        default: return false
        }
    }

    /// `PC/SC error 0x…` with the code's name.
    public var description: String {
        let hex = String(code, radix: 16, uppercase: true)
        return "PC/SC error 0x\(hex) (\(name))"
    }

    /// The name pcsclite.h gives the code.
    public var name: String { PCSCError.names[code] ?? "undocumented" }

    static let names: [UInt32: String] = [
        0x80100001: "SCARD_F_INTERNAL_ERROR",
        0x80100002: "SCARD_E_CANCELLED",
        0x80100003: "SCARD_E_INVALID_HANDLE",
        0x80100004: "SCARD_E_INVALID_PARAMETER",
        0x80100005: "SCARD_E_INVALID_TARGET",
        0x80100006: "SCARD_E_NO_MEMORY",
        0x80100007: "SCARD_F_WAITED_TOO_LONG",
        0x80100008: "SCARD_E_INSUFFICIENT_BUFFER",
        0x80100009: "SCARD_E_UNKNOWN_READER",
        0x8010000A: "SCARD_E_TIMEOUT",
        0x8010000B: "SCARD_E_SHARING_VIOLATION",
        0x8010000C: "SCARD_E_NO_SMARTCARD",
        0x8010000D: "SCARD_E_UNKNOWN_CARD",
        0x8010000E: "SCARD_E_CANT_DISPOSE",
        0x8010000F: "SCARD_E_PROTO_MISMATCH",
        0x80100010: "SCARD_E_NOT_READY",
        0x80100011: "SCARD_E_INVALID_VALUE",
        0x80100012: "SCARD_E_SYSTEM_CANCELLED",
        0x80100013: "SCARD_F_COMM_ERROR",
        0x80100014: "SCARD_F_UNKNOWN_ERROR",
        0x80100015: "SCARD_E_INVALID_ATR",
        0x80100016: "SCARD_E_NOT_TRANSACTED",
        0x80100017: "SCARD_E_READER_UNAVAILABLE",
        0x80100018: "SCARD_P_SHUTDOWN",
        0x80100019: "SCARD_E_PCI_TOO_SMALL",
        0x8010001A: "SCARD_E_READER_UNSUPPORTED",
        0x8010001B: "SCARD_E_DUPLICATE_READER",
        0x8010001C: "SCARD_E_CARD_UNSUPPORTED",
        0x8010001D: "SCARD_E_NO_SERVICE",
        0x8010001E: "SCARD_E_SERVICE_STOPPED",
        0x8010001F: "SCARD_E_UNEXPECTED",
        0x80100020: "SCARD_E_ICC_INSTALLATION",
        0x80100021: "SCARD_E_ICC_CREATEORDER",
        0x80100022: "SCARD_E_UNSUPPORTED_FEATURE",
        0x80100023: "SCARD_E_DIR_NOT_FOUND",
        0x80100024: "SCARD_E_FILE_NOT_FOUND",
        0x80100025: "SCARD_E_NO_DIR",
        0x80100026: "SCARD_E_NO_FILE",
        0x80100027: "SCARD_E_NO_ACCESS",
        0x80100028: "SCARD_E_WRITE_TOO_MANY",
        0x80100029: "SCARD_E_BAD_SEEK",
        0x8010002A: "SCARD_E_INVALID_CHV",
        0x8010002B: "SCARD_E_UNKNOWN_RES_MNG",
        0x8010002C: "SCARD_E_NO_SUCH_CERTIFICATE",
        0x8010002D: "SCARD_E_CERTIFICATE_UNAVAILABLE",
        0x8010002E: "SCARD_E_NO_READERS_AVAILABLE",
        0x8010002F: "SCARD_E_COMM_DATA_LOST",
        0x80100030: "SCARD_E_NO_KEY_CONTAINER",
        0x80100031: "SCARD_E_SERVER_TOO_BUSY",
        0x80100065: "SCARD_W_UNSUPPORTED_CARD",
        0x80100066: "SCARD_W_UNRESPONSIVE_CARD",
        0x80100067: "SCARD_W_UNPOWERED_CARD",
        0x80100068: "SCARD_W_RESET_CARD",
        0x80100069: "SCARD_W_REMOVED_CARD",
        0x8010006A: "SCARD_W_SECURITY_VIOLATION",
        0x8010006B: "SCARD_W_WRONG_CHV",
        0x8010006C: "SCARD_W_CHV_BLOCKED",
        0x8010006D: "SCARD_W_EOF",
        0x8010006E: "SCARD_W_CANCELLED_BY_USER",
        0x8010006F: "SCARD_W_CARD_NOT_AUTHENTICATED",
    ]
}

/// Throws the typed error for a pcsc-lite return value.
@inline(__always)
func check(_ rv: Int) throws {
    if let error = PCSCError(returnValue: rv) { throw error }
}
