import Foundation

/// Thermal paper widths and their printable dots per line (8 dots/mm).
public enum Paper: String, Sendable, CaseIterable {
    /// 58 mm roll, 384 dots.
    case mm58
    /// 80 mm roll, 576 dots.
    case mm80

    /// Printable dots per line.
    public var dots: Int {
        switch self {
        case .mm58: return 384
        case .mm80: return 576
        }
    }
}

/// Why a receipt could not be turned into printer bytes.
public enum ESCPOSError: Error, Equatable, CustomStringConvertible {
    /// The line has no GB18030 encoding.
    case textNotEncodable(String)
    /// The QR code (this many modules a side) would need modules smaller than `ESCPOS.minimumModuleDots`.
    case qrTooLarge(modules: Int, paperDots: Int)

    /// The error as one line.
    public var description: String {
        switch self {
        case .textNotEncodable(let line): return "cannot encode in GB18030: \(line)"
        case .qrTooLarge(let m, let dots): return "a QR code of \(m) modules does not fit \(dots) dots at \(ESCPOS.minimumModuleDots) dots a module"
        }
    }
}

/// The ESC/POS bytes of a receipt: text in the printer's Chinese (GB18030) mode, the QR code as a
/// `GS v 0` raster image, then feed and cut.
///
/// Commands used (all decoded by `ESCPOSDecoder`): `ESC @` initialize, `FS &` Chinese mode,
/// `ESC a n` alignment, `ESC E n` bold, `GS ! n` character size, `LF`, `GS v 0` raster,
/// `ESC d n` feed n lines, `GS V 66 0` feed and partial cut.
public enum ESCPOS {
    /// The smallest QR module printed, in dots (3 dots ≈ 0.375 mm at 203 dpi).
    public static let minimumModuleDots = 3
    /// Light modules around the QR code (ISO/IEC 18004 asks for 4).
    public static let quietZoneModules = 4
    /// GB18030 (Foundation's `kCFStringEncodingGB_18030_2000`).
    public static let gb18030 = String.Encoding(rawValue: 0x8000_0632)
    /// Dots a half-width character takes in font A (12 × 24); a Chinese character takes two.
    static let halfWidthDots = 12

    /// The receipt of `content` whose QR code holds `jws`, for `paper`.
    /// - Throws: `ESCPOSError`; `QRCodeError` if the JWS cannot be a QR code.
    public static func encode(content: ReceiptContent, jws: String, paper: Paper) throws -> [UInt8] {
        try encode(lines: ReceiptLayout.lines(for: content), qrData: Array(jws.utf8), paper: paper)
    }

    /// A receipt of `lines` (the first is the title) followed by a QR code of `qrData` (byte mode, level M).
    public static func encode(lines: [String], qrData: [UInt8], paper: Paper) throws -> [UInt8] {
        try encode(lines: lines, qr: try packedQR(qrData, paper: paper), paper: paper)
    }

    /// A slip of `lines` (the first is the title) with no code: a resident's status slip, which
    /// settles nothing and so carries no signature.
    public static func slip(lines: [String], paper: Paper) throws -> [UInt8] {
        try encode(lines: lines, qr: nil, paper: paper)
    }

    static func encode(lines: [String], qr raster: PackedRaster?, paper: Paper) throws -> [UInt8] {
        var out: [UInt8] = [0x1B, 0x40, 0x1C, 0x26]            // ESC @, FS &
        out.reserveCapacity(512 + (raster?.bytes.count ?? 0))
        if let title = lines.first {
            let bytes = try text(title)
            let doubleWidthFits = bytes.count * halfWidthDots * 2 <= paper.dots
            out += [0x1B, 0x61, 0x01, 0x1B, 0x45, 0x01]       // centered, bold
            out += [0x1D, 0x21, doubleWidthFits ? 0x11 : 0x01] // double height (and width if it fits)
            out += bytes + [0x0A]
            out += [0x1D, 0x21, 0x00, 0x1B, 0x45, 0x00, 0x1B, 0x61, 0x00]
        }
        for line in lines.dropFirst() { out += try text(line) + [0x0A] }
        if let raster {
            out += [0x1B, 0x64, 0x01]                          // one blank line before the code
            out += rasterCommand(raster)
            // Beside the code (receipt spec §2): it is for checking, not for paying.
            for line in BillSlip.footLines { out += try text(line) + [0x0A] }
        }
        out += [0x1B, 0x64, 0x04]                              // feed past the cutter
        out += [0x1D, 0x56, 0x42, 0x00]                        // GS V 66 0: feed and partial cut
        return out
    }

    /// A line in GB18030, after `ReceiptLayout.printable`.
    public static func text(_ line: String) throws -> [UInt8] {
        let clean = ReceiptLayout.printable(line)
        guard let data = clean.data(using: gb18030) else { throw ESCPOSError.textNotEncodable(clean) }
        return Array(data)
    }

    /// The QR code of `data` as wide as `paper` (so it prints centered on any printer): the largest
    /// whole number of dots a module that fits with the quiet zone, at least `minimumModuleDots`.
    /// - Throws: `ESCPOSError.qrTooLarge`, `QRCodeError`.
    public static func qrRaster(_ data: [UInt8], paper: Paper) throws -> Bitmap {
        try packedQR(data, paper: paper).bitmap
    }

    /// `GS v 0` (m = 0, normal size) with the bitmap packed 8 dots a byte, most significant bit leftmost,
    /// 1 for black; the width is padded with white to a whole byte.
    public static func rasterCommand(_ bitmap: Bitmap) -> [UInt8] {
        rasterCommand(PackedRaster(bitmap))
    }

    static func packedQR(_ data: [UInt8], paper: Paper) throws -> PackedRaster {
        let code = try QRCode(data: data, level: .M)
        let scale = paper.dots / (code.width + 2 * quietZoneModules)
        guard scale >= minimumModuleDots else { throw ESCPOSError.qrTooLarge(modules: code.width, paperDots: paper.dots) }
        let side = (code.width + 2 * quietZoneModules) * scale
        let left = (paper.dots - code.width * scale) / 2
        let rowBytes = paper.dots / 8
        var bytes = [UInt8](repeating: 0, count: rowBytes * side)
        bytes.withUnsafeMutableBufferPointer { out in
            var row = [UInt8](repeating: 0, count: rowBytes)
            for (y, modules) in code.modules.enumerated() {
                row.withUnsafeMutableBufferPointer { r in
                    for i in 0..<rowBytes { r[i] = 0 }
                    for (x, dark) in modules.enumerated() where dark {
                        let start = left + x * scale
                        for dot in start..<(start + scale) { r[dot >> 3] |= 0x80 >> UInt8(dot & 7) }
                    }
                    for copy in 0..<scale {
                        let base = ((y + quietZoneModules) * scale + copy) * rowBytes
                        for i in 0..<rowBytes { out[base + i] = r[i] }
                    }
                }
            }
        }
        return PackedRaster(width: paper.dots, height: side, bytes: bytes)
    }

    static func rasterCommand(_ raster: PackedRaster) -> [UInt8] {
        precondition(raster.rowBytes > 0 && raster.rowBytes <= 0xFFFF && raster.height > 0 && raster.height <= 0xFFFF)
        return [0x1D, 0x76, 0x30, 0x00,
                UInt8(raster.rowBytes & 0xFF), UInt8(raster.rowBytes >> 8),
                UInt8(raster.height & 0xFF), UInt8(raster.height >> 8)] + raster.bytes
    }
}

/// A 1-bit image packed as ESC/POS rasters and PNG rows want it: 8 dots a byte, most significant bit
/// leftmost, 1 for black, each row padded to a whole byte.
struct PackedRaster: Equatable {
    let width: Int
    let height: Int
    let bytes: [UInt8]
    var rowBytes: Int { (width + 7) / 8 }

    init(width: Int, height: Int, bytes: [UInt8]) {
        precondition(width > 0 && height > 0 && bytes.count == (width + 7) / 8 * height)
        self.width = width
        self.height = height
        self.bytes = bytes
    }

    init(_ bitmap: Bitmap) {
        let rowBytes = (bitmap.width + 7) / 8
        var bytes = [UInt8](repeating: 0, count: rowBytes * bitmap.height)
        bitmap.pixels.withUnsafeBufferPointer { dots in
            bytes.withUnsafeMutableBufferPointer { out in
                for y in 0..<bitmap.height {
                    for x in 0..<bitmap.width where dots[y * bitmap.width + x] {
                        out[y * rowBytes + x >> 3] |= 0x80 >> UInt8(x & 7)
                    }
                }
            }
        }
        self.init(width: bitmap.width, height: bitmap.height, bytes: bytes)
    }

    var bitmap: Bitmap {
        var pixels = [Bool](repeating: false, count: width * height)
        let rowBytes = self.rowBytes
        bytes.withUnsafeBufferPointer { packed in
            pixels.withUnsafeMutableBufferPointer { dots in
                for y in 0..<height {
                    for x in 0..<width where packed[y * rowBytes + x >> 3] & (0x80 >> UInt8(x & 7)) != 0 {
                        dots[y * width + x] = true
                    }
                }
            }
        }
        return Bitmap(width: width, height: height, pixels: pixels)
    }
}
