import Crypto
import Foundation
import Testing
@testable import Receipts

/// Rendering is deterministic and lossless over the range of seqs: what prints is what the layout says, and the
/// QR's JWS verifies and names the record. (Speed is for kiosk-bench, not asserted here.)
@Suite struct RenderTests {
    @Test(arguments: Paper.allCases)
    func receiptsOverTheRangeOfSeqs(paper: Paper) throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let keys = ["KSK-TEST-0001": key.publicKey]
        var seqs: [Int64] = [1, 2, 9, 10, 99, 100, 12_345, 99_999_999]
        var power: Int64 = 1
        while power < ReceiptJWS.maximumSeq { seqs.append(power * 7 % ReceiptJWS.maximumSeq + 1); power *= 10 }
        for seq in seqs {
            for base in [vectorSubsidy, vectorLegalAid, vectorReversal] {
                var content = base
                content.seq = seq
                if case .reversal(var r) = content.body { r.reversedSeq = max(1, seq - 1); content.body = .reversal(r) }
                if content.kind == .reversal && seq == 1 { continue }   // nothing before seq 1 to reverse
                let rendered = try ReceiptRenderer.render(content, key: key, paper: paper)
                #expect(try ReceiptRenderer.render(content, key: key, paper: paper) == rendered)
                let v = try ReceiptJWS.verify(rendered.jws, keys: keys)
                #expect(v.seq == seq && v.recordID == content.recordID && v.kind == content.kind)
                #expect(rendered.lines == ReceiptLayout.lines(for: content) && rendered.lines.last == "流水号：KSK-TEST-0001-\(seq)")
                let preview = try ReceiptPreview(escpos: rendered.escpos)
                #expect(preview.textLines == rendered.lines + BillSlip.footLines)
                try #require(preview.rasters.count == 1)
                #expect(preview.rasters[0].width <= paper.dots)
                #expect(preview.rasters[0] == (try ESCPOS.qrRaster(Array(rendered.jws.utf8), paper: paper)))
            }
        }
    }
}
