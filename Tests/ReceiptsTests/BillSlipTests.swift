import Crypto
import Foundation
import Testing
@testable import Receipts

/// Receipt spec §1, amendment 2026-12-06: a bill shared by two programs prints one slip, the
/// bill and what the patient pays once, each program on a line of its own, one QR per record.
@Suite struct BillSlipTests {
    static let twoPrograms: [ReceiptContent] = [
        .subsidy(seq: 7, institution: "330782-H01", deviceID: "KSK-TEST-0001", time: vectorTime, cardNumber: "3307820000000058",
                 holderName: "张卫东", billFen: 20000, subsidyFen: 5000, patientPaysFen: 0, allowanceLeftFen: 0, program: "惠民医疗费用贴补"),
        .subsidy(seq: 8, institution: "330782-H01", deviceID: "KSK-TEST-0001", time: vectorTime, cardNumber: "3307820000000058",
                 holderName: "张卫东", billFen: 20000, subsidyFen: 15000, patientPaysFen: 0, allowanceLeftFen: 30000, program: "集中供养人员门诊费补助"),
    ]

    @Test("one slip, two codes read back with zbarimg, each verifying as its record's receipt")
    func twoProgramBillPrintsOneSlip() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let slip = try BillSlip(receipts: Self.twoPrograms, institution: "市第一人民医院")
        let (jws, escpos) = try slip.render(key: key, paper: .mm58)
        let doc = try ESCPOSDecoder.decode(escpos)
        #expect(doc.cuts == 1, "one slip, one cut")
        #expect(doc.rasters.count == 2)
        let text = doc.textLines
        #expect(text.filter { $0.hasPrefix("账单：") } == ["账单：200.00元"])
        let pay = try #require(text.firstIndex(of: "您需支付："))
        #expect(text[pay + 1] == "0.00元" && text.filter { $0.hasPrefix("您需支付") }.count == 1)
        #expect(text.contains("  惠民卡减免：50.00元") && text.contains("  惠民卡减免：150.00元") && text.contains("  今年还可减免：300.00元"))
        #expect(text.contains("机构：市第一人民医院") && text.contains("二维码仅供核验，不是付款码") && text.contains("请保留此凭条"))
        #expect(text.contains("流水号：KSK-TEST-0001-7") && text.contains("流水号：KSK-TEST-0001-8"))
        #expect(!text.joined().contains("张卫东") && !text.joined().contains("3307820000000058"))
        // What the patient pays in double height and width, on 58 mm paper too (the largest amount fits).
        let pays = try #require(doc.lines.first { $0.text == "0.00元" })
        #expect(pays.widthScale == 2 && pays.heightScale == 2 && pays.bold)
        var big = try BillSlip(receipts: Self.twoPrograms)
        big.patientPaysFen = 99_999_999
        let bigDoc = try ESCPOSDecoder.decode(try big.render(key: key, paper: .mm58).escpos)
        #expect(bigDoc.lines.first { $0.text == "999999.99元" }?.widthScale == 2)
        // Each record id just before its code.
        #expect(text.firstIndex(of: "流水号：KSK-TEST-0001-7")! < text.firstIndex(of: "流水号：KSK-TEST-0001-8")!)
        let publicKey = try Fixtures.publicKey("KSK-TEST-0001")
        for (i, raster) in doc.rasters.enumerated() {
            let read = String(decoding: try zbarScan(PNG.encode(raster)), as: UTF8.self)
            #expect(read == jws[i])
            let verified = try ReceiptJWS.verify(read, keys: ["KSK-TEST-0001": publicKey])
            #expect(verified.recordID == "KSK-TEST-0001-\(7 + i)")
        }
    }

    @Test("receipts of different bills or cards are not one slip")
    func notOneBill() throws {
        var other = Self.twoPrograms
        other[1] = .subsidy(seq: 8, institution: "330782-H01", deviceID: "KSK-TEST-0001", time: vectorTime, cardNumber: "3307820000000017",
                            holderName: "王秀英", billFen: 20000, subsidyFen: 15000, patientPaysFen: 0, allowanceLeftFen: 30000)
        #expect(throws: BillSlipError.self) { try BillSlip(receipts: other) }
        #expect(throws: BillSlipError.self) { try BillSlip(receipts: [vectorLegalAid]) }
        #expect(throws: BillSlipError.self) { try BillSlip(receipts: []) }
    }
}
