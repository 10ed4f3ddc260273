import CQREncode
import Foundation

/// Why libqrencode made no symbol.
public enum QRCodeError: Error, Equatable, CustomStringConvertible {
    /// The data does not fit the largest symbol (version 40) at this level (`ERANGE`).
    case dataTooLarge(Int)
    /// libqrencode refused the input (`EINVAL`) or failed with another `errno`.
    case encodingFailed(errno: Int32)

    /// The error as one line.
    public var description: String {
        switch self {
        case .dataTooLarge(let n): return "\(n) bytes do not fit in a QR code at this error-correction level"
        case .encodingFailed(let e): return "libqrencode failed (errno \(e))"
        }
    }
}

/// A QR code symbol in byte mode, made by libqrencode (`QRcode_encodeData`). The C `QRcode` is copied
/// into `modules` and freed (`QRcode_free`) before the initializer returns; no C pointer is kept.
public struct QRCode: Sendable, Equatable {
    /// QR error-correction level.
    public enum Level: Sendable {
        /// Low, medium, quartile, high (receipts use M, receipt spec §1).
        case L, M, Q, H

        var c: QRecLevel {
            switch self {
            case .L: return QR_ECLEVEL_L
            case .M: return QR_ECLEVEL_M
            case .Q: return QR_ECLEVEL_Q
            case .H: return QR_ECLEVEL_H
            }
        }
    }

    /// The symbol version (1…40), the smallest that holds the data.
    public let version: Int
    /// Modules per side, without quiet zone.
    public let width: Int
    /// `modules[row][column]`, `true` for a dark module.
    public let modules: [[Bool]]

    /// One call into libqrencode at a time: whether the distro's build is thread-safe is not ours to assume.
    private static let lock = NSLock()

    /// Encodes `data` in 8-bit byte mode at `level`, with the smallest version that fits.
    /// - Throws: `QRCodeError` when libqrencode returns NULL.
    public init(data: [UInt8], level: Level = .M) throws {
        precondition(!data.isEmpty, "a QR code needs at least one byte")
        QRCode.lock.lock()
        defer { QRCode.lock.unlock() }
        errno = 0
        let symbol = data.withUnsafeBufferPointer { QRcode_encodeData(Int32($0.count), $0.baseAddress, 0, level.c) }
        guard let symbol else {
            let e = errno
            if e == ERANGE { throw QRCodeError.dataTooLarge(data.count) }
            throw QRCodeError.encodingFailed(errno: e)
        }
        defer { QRcode_free(symbol) }
        let width = Int(symbol.pointee.width)
        let cells = UnsafeBufferPointer(start: symbol.pointee.data, count: width * width)
        var modules = [[Bool]](repeating: [Bool](repeating: false, count: width), count: width)
        for row in 0..<width {
            modules[row].withUnsafeMutableBufferPointer { line in
                for column in 0..<width where cells[row * width + column] & 1 == 1 { line[column] = true }
            }
        }
        self.version = Int(symbol.pointee.version)
        self.width = width
        self.modules = modules
    }

    /// The symbol as a bitmap: `scale` dots per module and `quietZone` light modules on every side.
    public func bitmap(scale: Int, quietZone: Int = 4) -> Bitmap {
        precondition(scale >= 1 && quietZone >= 0)
        let side = (width + 2 * quietZone) * scale
        var bitmap = Bitmap(width: side, height: side)
        for (row, line) in modules.enumerated() {
            for (column, dark) in line.enumerated() where dark {
                bitmap.fill(x: (column + quietZone) * scale, y: (row + quietZone) * scale, width: scale, height: scale)
            }
        }
        return bitmap
    }
}
