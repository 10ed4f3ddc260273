import Crypto
import Foundation

/// A receipt as the printer would show it, read back from its ESC/POS bytes: the text lines and the
/// QR raster as a PNG — for a preview on screen, a kiosk without a printer, or a test.
public struct ReceiptPreview: Sendable {
    /// The printed text lines, decoded from GB18030.
    public let textLines: [String]
    /// Every raster image printed, in order.
    public let rasters: [Bitmap]
    /// The first raster image (the QR code) as a 1-bit grayscale PNG; `nil` if none was printed.
    public let qrPNG: Data?

    /// Decodes `escpos` (see `ESCPOSDecoder`).
    /// - Throws: `ESCPOSDecodeError`.
    public init(escpos: [UInt8]) throws {
        let doc = try ESCPOSDecoder.decode(escpos)
        textLines = doc.textLines
        rasters = doc.rasters
        qrPNG = doc.rasters.first.map { PNG.encode($0) }
    }

    /// The text lines as one text.
    public var text: String { textLines.joined(separator: "\n") }
}

/// A receipt ready to print: its JWS, its text lines and its ESC/POS bytes.
public struct RenderedReceipt: Sendable, Equatable {
    /// The QR content (compact JWS).
    public let jws: String
    /// The printed text lines (`ReceiptLayout.lines`).
    public let lines: [String]
    /// What to send to the printer.
    public let escpos: [UInt8]
}

/// Layout, signature, QR code and ESC/POS in one call.
public enum ReceiptRenderer {
    /// Renders `content` for `paper`, signed by the device key.
    /// - Throws: `ReceiptJWSError`, `QRCodeError`, `ESCPOSError`.
    public static func render(_ content: ReceiptContent, key: Curve25519.Signing.PrivateKey, paper: Paper) throws -> RenderedReceipt {
        let jws = try ReceiptJWS.sign(content: content, key: key)
        let lines = ReceiptLayout.lines(for: content)
        let escpos = try ESCPOS.encode(lines: lines, qrData: Array(jws.utf8), paper: paper)
        return RenderedReceipt(jws: jws, lines: lines, escpos: escpos)
    }
}
