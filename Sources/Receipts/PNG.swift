import Foundation

/// A minimal PNG writer for grayscale images: no filtering, zlib "stored" (uncompressed) deflate blocks,
/// CRC-32 and Adler-32 computed here. Enough for receipt previews and QR round trips; no dependencies.
public enum PNG {
    /// Bits per pixel of the grayscale PNG written for a `Bitmap`.
    public enum BitDepth: Sendable {
        /// 1 bit a pixel, 0 black, 1 white.
        case one
        /// 8 bits a pixel, 0 black, 255 white.
        case eight
    }

    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// A grayscale PNG of `bitmap` (black dots black, the rest white).
    public static func encode(_ bitmap: Bitmap, bitDepth: BitDepth = .one) -> Data {
        precondition(bitmap.width > 0 && bitmap.height > 0, "PNG needs at least one pixel")
        switch bitDepth {
        case .eight:
            return encodeGray(width: bitmap.width, height: bitmap.height, pixels: bitmap.pixels.map { $0 ? 0 : 255 })
        case .one:
            let packed = PackedRaster(bitmap)                  // 1 = black; PNG grayscale wants 0 = black
            var raw = [UInt8]()
            raw.reserveCapacity((packed.rowBytes + 1) * bitmap.height)
            for y in 0..<bitmap.height {
                raw.append(0)                                  // filter: none
                for byte in packed.bytes[(y * packed.rowBytes)..<((y + 1) * packed.rowBytes)] { raw.append(~byte) }
            }
            return assemble(width: bitmap.width, height: bitmap.height, bitDepth: 1, raw: raw)
        }
    }

    /// An 8-bit grayscale PNG (0 black … 255 white) of `pixels`, row by row.
    public static func encodeGray(width: Int, height: Int, pixels: [UInt8]) -> Data {
        precondition(width > 0 && height > 0 && pixels.count == width * height, "pixel count must be width × height")
        var raw = [UInt8]()
        raw.reserveCapacity((width + 1) * height)
        for y in 0..<height {
            raw.append(0)
            raw += pixels[(y * width)..<((y + 1) * width)]
        }
        return assemble(width: width, height: height, bitDepth: 8, raw: raw)
    }

    static func assemble(width: Int, height: Int, bitDepth: UInt8, raw: [UInt8]) -> Data {
        precondition(width <= Int(Int32.max) && height <= Int(Int32.max))
        var out = signature
        var ihdr = bigEndian(UInt32(width)) + bigEndian(UInt32(height))
        ihdr += [bitDepth, 0, 0, 0, 0]                          // grayscale, deflate, no filter method, no interlace
        out += chunk("IHDR", ihdr)
        out += chunk("IDAT", zlibStored(raw))
        out += chunk("IEND", [])
        return Data(out)
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeBytes = Array(type.utf8)
        precondition(typeBytes.count == 4)
        return bigEndian(UInt32(data.count)) + typeBytes + data + bigEndian(crc32(typeBytes + data))
    }

    /// A zlib stream (RFC 1950) of uncompressed deflate blocks (RFC 1951 §3.2.4), at most 65535 bytes each.
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]                         // deflate, 32 K window; 0x7801 % 31 == 0
        var offset = 0
        repeat {
            let length = min(65535, data.count - offset)
            let final: UInt8 = offset + length == data.count ? 1 : 0
            out.append(final)                                   // BFINAL, BTYPE = 00
            out += [UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
            out += data[offset..<(offset + length)]
            offset += length
        } while offset < data.count
        return out + bigEndian(adler32(data))
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 (ISO 3309 / ITU-T V.42, as PNG uses it).
    public static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in data { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// Adler-32 (RFC 1950).
    public static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var index = 0
        while index < data.count {
            let end = min(index + 5552, data.count)            // no overflow before the modulo
            for byte in data[index..<end] { a += UInt32(byte); b += a }
            a %= 65521
            b %= 65521
            index = end
        }
        return b << 16 | a
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }
}
