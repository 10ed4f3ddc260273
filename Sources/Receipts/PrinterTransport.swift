import KioskProtocol
import Foundation

/// A printer fault or a failed link. Faults (`paperOut`, `coverOpen`, `offline`) come from the printer's
/// own status, read before anything is printed; the receipt can be printed again once cleared.
public enum PrinterError: Error, Equatable, CustomStringConvertible {
    /// The roll is out (DLE EOT 4 bits 5–6, or DLE EOT 2 bit 5).
    case paperOut
    /// The cover is open (DLE EOT 2 bit 2).
    case coverOpen
    /// The printer says it is offline (DLE EOT 1 bit 3) for another reason.
    case offline
    /// The printer cannot be reached or opened (refused, no route, no such device, permission denied…).
    case unreachable(String)
    /// The printer did not answer, or did not take the bytes, in time.
    case timeout
    /// A status byte without the fixed bits DLE EOT replies always have.
    case badStatusReply(UInt8)
    /// The link failed while sending.
    case ioFailed(String)

    /// The fault or failure in words.
    public var description: String {
        switch self {
        case .paperOut: return "the printer is out of paper"
        case .coverOpen: return "the printer cover is open"
        case .offline: return "the printer is offline"
        case .unreachable(let why): return "the printer cannot be reached: \(why)"
        case .timeout: return "the printer did not answer in time"
        case .badStatusReply(let b): return "the printer answered a status query with \(Hex.encode([b], uppercase: true))"
        case .ioFailed(let why): return "sending to the printer failed: \(why)"
        }
    }
}

/// An ESC/POS real-time status (`DLE EOT n`, n = 1, 2, 4), as read before printing.
public struct PrinterStatus: Sendable, Equatable {
    /// Reply to `DLE EOT 1`, printer status.
    public var printer: UInt8
    /// Reply to `DLE EOT 2`, offline cause.
    public var offlineCause: UInt8
    /// Reply to `DLE EOT 4`, roll paper sensor.
    public var paper: UInt8

    /// The three replies; each must have bits 1 and 4 set and bits 0 and 7 clear, as every DLE EOT reply does.
    /// - Throws: `PrinterError.badStatusReply`.
    public init(printer: UInt8, offlineCause: UInt8, paper: UInt8) throws {
        for b in [printer, offlineCause, paper] where b & 0x93 != 0x12 { throw PrinterError.badStatusReply(b) }
        self.printer = printer
        self.offlineCause = offlineCause
        self.paper = paper
    }

    /// DLE EOT 1 bit 3 clear.
    public var isOnline: Bool { printer & 0x08 == 0 }
    /// DLE EOT 2 bit 2.
    public var isCoverOpen: Bool { offlineCause & 0x04 != 0 }
    /// DLE EOT 4 bits 5–6 (paper end), or DLE EOT 2 bit 5 (stopped at paper end).
    public var isPaperOut: Bool { paper & 0x60 != 0 || offlineCause & 0x20 != 0 }
    /// DLE EOT 4 bits 2–3: the roll is nearly out (a warning; printing goes on).
    public var isPaperNearEnd: Bool { paper & 0x0C != 0 }

    /// Throws the fault that stops printing, cover first (an open cover can also read as paper end).
    /// - Throws: `PrinterError.coverOpen`, `.paperOut` or `.offline`.
    public func check() throws {
        if isCoverOpen { throw PrinterError.coverOpen }
        if isPaperOut { throw PrinterError.paperOut }
        if !isOnline { throw PrinterError.offline }
    }
}

/// Where receipt bytes go. Each `send` is one whole receipt.
public protocol PrinterTransport: Sendable {
    /// Sends one receipt's ESC/POS bytes. Two-way transports read the status first and throw
    /// (printing nothing) on a fault.
    /// - Throws: `PrinterError`.
    func send(_ bytes: [UInt8]) throws

    /// The printer's status, or `nil` when the link cannot tell (one-way).
    /// - Throws: `PrinterError`.
    func status() throws -> PrinterStatus?
}

extension PrinterTransport {
    /// A one-way link: no status.
    public func status() throws -> PrinterStatus? { nil }
}

/// Why a printer configuration string was refused.
public enum PrinterSpecError: Error, Equatable, CustomStringConvertible {
    /// Not `file:…`, `tcp:…` or `device:…`.
    case unknownScheme(String)
    /// `file:` or `device:` without an absolute path.
    case missingPath(String)
    /// `tcp:` without `HOST:PORT`, or with a port outside 1…65535.
    case badHostPort(String)

    /// The refusal as one line, with the forms expected.
    public var description: String {
        switch self {
        case .unknownScheme(let s): return "printer \"\(s)\": expected file:/PATH, tcp:HOST:PORT or device:/dev/PATH"
        case .missingPath(let s): return "printer \"\(s)\": expected an absolute path after the colon"
        case .badHostPort(let s): return "printer \"\(s)\": expected tcp:HOST:PORT with a port from 1 to 65535"
        }
    }
}

/// Printer configuration (`DeviceConfig.printer`).
public enum Printer {
    /// Parses `file:/path` (a folder — existing, or written with a trailing `/` — gets one file per receipt;
    /// anything else is a file appended to), `tcp:HOST:PORT` (`[v6]` hosts in brackets) or
    /// `device:/dev/usb/lp0`.
    /// - Parameter timeout: bound on each network or device step (connect, each status reply, each stall).
    /// - Throws: `PrinterSpecError`.
    public static func parse(spec: String, timeout: TimeInterval = 5) throws -> any PrinterTransport {
        let trimmed = spec.trimmingCharacters(in: .whitespaces)
        guard let colon = trimmed.firstIndex(of: ":") else { throw PrinterSpecError.unknownScheme(spec) }
        let scheme = trimmed[..<colon].lowercased()
        var rest = String(trimmed[trimmed.index(after: colon)...])
        switch scheme {
        case "file":
            if rest.hasPrefix("//") { rest.removeFirst(2) }
            guard rest.hasPrefix("/"), rest.count > 1 else { throw PrinterSpecError.missingPath(spec) }
            return FilePrinter(url: URL(fileURLWithPath: rest, isDirectory: rest.hasSuffix("/") || isDirectory(rest)))
        case "device":
            guard rest.hasPrefix("/"), rest.count > 1 else { throw PrinterSpecError.missingPath(spec) }
            return DevicePrinter(path: rest, timeout: timeout)
        case "tcp":
            guard let split = rest.lastIndex(of: ":") else { throw PrinterSpecError.badHostPort(spec) }
            var host = String(rest[..<split])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, !host.contains("/"), let port = UInt16(rest[rest.index(after: split)...]), port > 0 else {
                throw PrinterSpecError.badHostPort(spec)
            }
            return TCPPrinter(host: host, port: port, timeout: timeout)
        default:
            throw PrinterSpecError.unknownScheme(spec)
        }
    }

    private static func isDirectory(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
    }
}
