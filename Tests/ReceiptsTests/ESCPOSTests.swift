import Crypto
import Foundation
import Testing
@testable import Receipts

@Suite struct ESCPOSTests {
    /// Printer bytes for 58 and 80 mm decode back to the layout's lines, and the raster, as a PNG read by
    /// zbarimg, gives exactly the JWS.
    @Test(arguments: Paper.allCases)
    func roundTripThroughTheDecoderAndZbar(paper: Paper) throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        for content in [vectorSubsidy, vectorLegalAid, vectorReversal] + worstCases {
            let jws = try ReceiptJWS.sign(content: content, key: key)
            let bytes = try ESCPOS.encode(content: content, jws: jws, paper: paper)
            let doc = try ESCPODecoderCheck.decode(bytes)
            #expect(doc.textLines == ReceiptLayout.lines(for: content) + BillSlip.footLines)
            #expect(doc.cuts == 1)
            let title = try #require(doc.lines.first)
            #expect(title.bold && title.alignment == .center && title.heightScale == 2)
            // Double width only where it fits: 10 characters need 480 dots, more than 58 mm has.
            #expect(title.widthScale == (try ESCPOS.text(title.text).count * 24 <= paper.dots ? 2 : 1))
            #expect(content.kind != .subsidy || title.widthScale == (paper == .mm80 ? 2 : 1))
            #expect(doc.lines.dropFirst().allSatisfy { !$0.bold && $0.widthScale == 1 && $0.heightScale == 1 && $0.alignment == .left })
            try #require(doc.rasters.count == 1)
            let raster = doc.rasters[0]
            #expect(raster.width <= paper.dots)
            try checkQuietZoneAndModules(raster, jws: jws, paper: paper)
            #expect(try zbarScan(PNG.encode(raster)) == Array(jws.utf8))
        }
    }

    /// The QR sits centered with at least 4 light modules around it, modules at least 3 dots.
    func checkQuietZoneAndModules(_ raster: Bitmap, jws: String, paper: Paper) throws {
        var minX = raster.width, maxX = -1, minY = raster.height, maxY = -1
        for y in 0..<raster.height { for x in 0..<raster.width where raster[x, y] {
            minX = min(minX, x); maxX = max(maxX, x); minY = min(minY, y); maxY = max(maxY, y)
        } }
        let side = maxX - minX + 1
        #expect(side == maxY - minY + 1)
        let code = try QRCode(data: Array(jws.utf8), level: .M)
        let scale = side / code.width
        #expect(side % code.width == 0 && scale >= ESCPOS.minimumModuleDots)
        #expect(scale == paper.dots / (code.width + 8))                  // as large as fits
        #expect(minX >= 4 * scale && raster.width - 1 - maxX >= 4 * scale && minY >= 4 * scale && raster.height - 1 - maxY >= 4 * scale)
        #expect(abs(minX - (raster.width - 1 - maxX)) <= 1)              // centered
    }

    @Test func theVectorJWSIsAVersion12CodeAt58mm() throws {
        let code = try QRCode(data: Array(try Fixtures.receiptJWS().utf8), level: .M)
        #expect(code.version == 12 && code.width == 65 && code.modules.count == 65 && code.modules.allSatisfy { $0.count == 65 })
        // Finder pattern, top-left: a dark 7×7 ring around a light ring around a dark 3×3.
        #expect(code.modules[0][0] && code.modules[0][6] && code.modules[6][0] && !code.modules[1][1] && code.modules[3][3])
        #expect(try ESCPOS.qrRaster(Array(try Fixtures.receiptJWS().utf8), paper: .mm58).height == 73 * 5)
    }

    /// The longest receipt JWS (receipt.md §1's worst case, 299 bytes) still fits 58 mm paper at 4 dots a module.
    @Test func theWorstCaseFits58mm() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let longest = try worstCases.map { try ReceiptJWS.sign(content: $0, key: key) }.max { $0.utf8.count < $1.utf8.count }
        let jws = try #require(longest)
        #expect(jws.utf8.count == (try Fixtures.worstCaseBytes(.subsidy)))
        let code = try QRCode(data: Array(jws.utf8), level: .M)
        #expect(code.version == 13 && code.width == 69)
        let raster = try ESCPOS.qrRaster(Array(jws.utf8), paper: .mm58)
        #expect(raster.height == 77 * 4 && raster.height / 77 >= ESCPOS.minimumModuleDots)
        #expect(try zbarScan(PNG.encode(raster)) == Array(jws.utf8))
    }

    @Test func qrRefusesWhatCannotFit() {
        #expect(throws: QRCodeError.dataTooLarge(3000)) { try QRCode(data: [UInt8](repeating: 0x41, count: 3000), level: .M) }
        #expect(throws: ESCPOSError.self) { try ESCPOS.qrRaster([UInt8](repeating: 0x41, count: 1000), paper: .mm58) }
    }

    @Test func textIsGB18030() throws {
        #expect(try ESCPOS.text("王") == [0xCD, 0xF5])
        #expect(try ESCPOS.text("¥1") == [0xA3, 0xA4, 0x31])                       // full-width ￥, not 81 30 84 36
        #expect(try ESCPOS.text("元：") == [0xD4, 0xAA, 0xA3, 0xBA])
        #expect(try ESCPOS.text("a\u{1B}b") == [0x61, 0x20, 0x62])                 // no command injection
    }

    @Test func rasterCommandPacksBitsMSBFirst() throws {
        var bitmap = Bitmap(width: 10, height: 2)
        bitmap[0, 0] = true; bitmap[9, 0] = true; bitmap[7, 1] = true
        let bytes = ESCPOS.rasterCommand(bitmap)
        #expect(bytes == [0x1D, 0x76, 0x30, 0x00, 2, 0, 2, 0, 0x80, 0x40, 0x01, 0x00])
        let doc = try ESCPOSDecoder.decode(bytes)
        #expect(doc.rasters == [Bitmap(width: 16, height: 2, pixels: (0..<32).map { [0, 9, 16 + 7].contains($0) })])
    }

    @Test func decoderRejectsGarbageWithTypedErrors() throws {
        let good = try ESCPOS.encode(content: vectorSubsidy, jws: try Fixtures.receiptJWS(), paper: .mm58)
        let cases: [([UInt8], ESCPOSDecodeError)] = [
            ([0x1B, 0x40, 0x07], .unknownCommand(offset: 2, bytes: [0x07])),
            ([0x1B, 0x7A, 0x00], .unknownCommand(offset: 0, bytes: [0x1B, 0x7A])),
            ([0x1B], .truncated(offset: 0)),
            ([0x1D, 0x76, 0x30, 0x00, 0x02, 0x00, 0x10, 0x00, 0xFF], .truncated(offset: 0)),
            ([0x1B, 0x61, 0x09], .invalidParameter(offset: 2, value: 9)),
            ([0x1C, 0x26, 0xFF, 0xFF, 0x0A], .invalidText(offset: 2)),
            ([0x1B, 0x40, 0xCD, 0xF5, 0x0A], .textOutsideChineseMode(offset: 2)),
            ([0x1C, 0x26, 0xCD, 0xF5], .unterminatedText(offset: 2)),
            ([0x41, 0x1D, 0x76, 0x30, 0x00, 0x01, 0x00, 0x01, 0x00, 0xFF], .rasterWithPendingText(offset: 1)),
            (Array(good.prefix(good.count - 100)), .truncated(offset: try #require(rasterStart(good)))),
        ]
        for (bytes, expected) in cases {
            #expect(throws: expected) { try ESCPOSDecoder.decode(bytes) }
        }
        // Random bytes: always an error or a document, never a crash.
        var generator = SystemRandomNumberGenerator()
        var failures = 0
        for _ in 0..<300 {
            let noise = (0..<Int.random(in: 1...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            do { _ = try ESCPOSDecoder.decode(noise) } catch is ESCPOSDecodeError { failures += 1 }
        }
        #expect(failures > 250)
    }
}

/// Where the first `GS v 0` starts.
func rasterStart(_ bytes: [UInt8]) -> Int? {
    bytes.indices.first { $0 + 2 < bytes.count && bytes[$0] == 0x1D && bytes[$0 + 1] == 0x76 && bytes[$0 + 2] == 0x30 }
}

/// The decoder under test (a named seam so failures point at decoding, not encoding).
enum ESCPODecoderCheck {
    static func decode(_ bytes: [UInt8]) throws -> ESCPOSDocument {
        let doc = try ESCPOSDecoder.decode(bytes)
        #expect(Array(bytes.prefix(4)) == [0x1B, 0x40, 0x1C, 0x26], "ESC @ then FS & first")
        #expect(Array(bytes.suffix(4)) == [0x1D, 0x56, 0x42, 0x00], "feed and cut last")
        return doc
    }
}

@Suite struct PNGTests {
    @Test func checksums() {
        #expect(PNG.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(PNG.crc32(Array("IEND".utf8)) == 0xAE42_6082)
        #expect(PNG.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
        #expect(PNG.adler32([UInt8](repeating: 0xFF, count: 100_000)) == 0x149A_302C)
    }

    @Test func zlibStoredBlocksSplitAt65535() {
        let data = (0..<150_000).map { UInt8(truncatingIfNeeded: $0) }
        let z = PNG.zlibStored(data)
        #expect(Array(z.prefix(2)) == [0x78, 0x01] && (0x78 * 256 + 0x01) % 31 == 0)
        #expect(z.count == 2 + 3 * 5 + data.count + 4)
        #expect(Array(z[2..<7]) == [0x00, 0xFF, 0xFF, 0x00, 0x00])           // first block, not final, 65535
        let lastHeader = 2 + 2 * (5 + 65535)
        #expect(Array(z[lastHeader..<(lastHeader + 5)]) == [0x01, 0xF2, 0x49, 0x0D, 0xB6])  // final, 18930 bytes
    }

    @Test func layoutOfA1BitPNG() {
        var bitmap = Bitmap(width: 9, height: 1)
        bitmap[0, 0] = true
        let png = [UInt8](PNG.encode(bitmap))
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        #expect(Array(png[8..<33]) == [0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 9, 0, 0, 0, 1, 1, 0, 0, 0, 0]
                + PNG.bigEndian(PNG.crc32(Array(png[12..<29]))))
        // IDAT: zlib header, one final stored block of 3 bytes (filter 0, 0x7F, 0xFF), Adler-32.
        #expect(Array(png[37..<41]) == Array("IDAT".utf8))
        #expect(Array(png[41..<51]) == [0x78, 0x01, 0x01, 0x03, 0x00, 0xFC, 0xFF, 0x00, 0x7F, 0xFF])
        #expect(Array(png.suffix(12)) == [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82])
    }

    /// An 8-bit PNG of the QR reads as well as the 1-bit one.
    @Test func eightBitPNGScans() throws {
        let jws = try Fixtures.receiptJWS()
        let raster = try ESCPOS.qrRaster(Array(jws.utf8), paper: .mm58)
        #expect(try zbarScan(PNG.encode(raster, bitDepth: .eight)) == Array(jws.utf8))
    }

    @Test func previewReadsTheReceiptBack() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let rendered = try ReceiptRenderer.render(vectorSubsidy, key: key, paper: .mm80)
        #expect(rendered.jws == (try Fixtures.receiptJWS()))
        let preview = try ReceiptPreview(escpos: rendered.escpos)
        #expect(preview.textLines == rendered.lines + BillSlip.footLines && preview.text == (ReceiptLayout.lines(for: vectorSubsidy) + BillSlip.footLines).joined(separator: "\n"))
        #expect(try zbarScan(try #require(preview.qrPNG)) == Array(rendered.jws.utf8))
    }
}
