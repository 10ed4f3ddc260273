import KioskProtocol
import Foundation
import Testing
@testable import Receipts

@Suite struct LayoutTests {
    @Test func masking() {
        #expect(Masking.cardNumber("3307820000000017") == "3307********0017")
        #expect(Masking.cardNumber("6217002430012345678") == "6217***********5678")
        #expect(Masking.cardNumber("123456789") == "1234*6789")
        #expect(Masking.cardNumber("12345678") == "********")
        #expect(Masking.name("王秀英") == "王**")
        #expect(Masking.name("欧阳娜娜") == "欧***")
        #expect(Masking.name("王**") == "王**")
        #expect(Masking.name("李") == "李" && Masking.name("") == "")
        #expect(Masking.identityNumbers(in: "身份证 33078219800101002X 与 330782198001010021，电话 13800000000")
            == "身份证 3307**********002X 与 3307**********0021，电话 13800000000")
    }

    @Test func moneyAndTime() {
        #expect(ReceiptFormat.yuan(10000) == "100.00")
        #expect(ReceiptFormat.yuan(0) == "0.00" && ReceiptFormat.yuan(5) == "0.05" && ReceiptFormat.yuan(12345) == "123.45")
        #expect(ReceiptFormat.yuan(-150) == "-1.50" && ReceiptFormat.yuan(99_999_999_999) == "999999999.99")
        #expect(ReceiptFormat.chinaTime(vectorTime) == "2026-11-22 11:00:00")
        #expect(ReceiptFormat.chinaTime(Date(timeIntervalSince1970: 1_798_732_799)) == "2026-12-31 23:59:59")
        #expect(ReceiptFormat.chinaTime(Date(timeIntervalSince1970: 951_753_600)) == "2000-02-29 00:00:00")   // 2000-02-28T16:00Z
        // Against Foundation's own calendar, over many instants.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(secondsFromGMT: 8 * 3600)
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        for t in stride(from: -86_400 * 400, to: 4_102_444_800, by: 7_654_321) {
            let d = Date(timeIntervalSince1970: TimeInterval(t))
            #expect(ReceiptFormat.chinaTime(d) == formatter.string(from: d))
        }
    }

    @Test func subsidyLines() {
        #expect(ReceiptLayout.lines(for: vectorSubsidy) == [
            "惠民医疗费用贴补凭条",
            "机构：330782-H01",
            "设备：KSK-TEST-0001",
            "时间：2026-11-22 11:00:00",
            "卡号：3307********0017",
            "姓名：王**",
            "票据金额：100.00元",
            "贴补金额：100.00元",
            "个人支付：0.00元",
            "本年剩余额度：300.00元",
            "流水号：KSK-TEST-0001-1",
        ])
    }

    @Test func legalAidAndReversalLines() {
        let la = ReceiptLayout.lines(for: vectorLegalAid)
        #expect(la.first == "法律援助申请回执")
        #expect(la.contains("申请事项：请求支付劳动报酬") && la.contains("优先受理、优先审批、优先指派"))
        #expect(la.contains("姓名：李**") && la.contains("卡号：3307********0025") && la.last == "流水号：KSK-TEST-0001-3")
        let rv = ReceiptLayout.lines(for: vectorReversal)
        #expect(rv == [
            "冲正凭条",
            "机构：330782-H01",
            "设备：KSK-TEST-0001",
            "时间：2026-11-22 11:10:00",
            "卡号：3307********0017",
            "姓名：王**",
            "原流水号：KSK-TEST-0001-1",
            "冲正金额：100.00元",
            "冲正原因：收费处撤销账单",
            "流水号：KSK-TEST-0001-2",
        ])
    }

    /// One receipt of a shared bill: the whole bill, the program and its part, what the patient pays of the whole
    /// bill, the program's allowance left; every amount as the QR signs it.
    @Test func sharedBillLinesNameTheProgram() throws {
        let content = ReceiptContent.subsidy(seq: 2, institution: "330782-H01", deviceID: "KSK-TEST-0001", time: vectorTime,
                                             cardNumber: "3307820000000058", holderName: "张三丰", billFen: 20000, subsidyFen: 15000,
                                             patientPaysFen: 0, allowanceLeftFen: 30000, program: "集中供养人员门诊费补助")
        let lines = ReceiptLayout.lines(for: content)
        #expect(Array(lines[6...11]) == ["票据金额：200.00元", "贴补项目：集中供养人员门诊费补助", "贴补金额：150.00元", "个人支付：0.00元",
                                         "本年剩余额度：300.00元", "流水号：KSK-TEST-0001-2"])
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let v = try ReceiptJWS.verify(try ReceiptJWS.sign(content: content, key: key), keys: ["KSK-TEST-0001": key.publicKey])
        for (label, fen) in [("票据金额：", v.billFen), ("贴补金额：", v.subsidyFen), ("个人支付：", v.patientPaysFen), ("本年剩余额度：", v.allowanceLeftFen)] {
            #expect(lines.contains(label + ReceiptFormat.yuan(try #require(fen)) + "元"))
        }
        #expect(lines.contains("流水号：" + v.recordID))
    }

    /// No line carries the full card number, the full name or anything like an identity number, even when
    /// the caller's free text does; no control character reaches the printer.
    @Test func nothingPersonalInClear() {
        var content = vectorSubsidy
        content.extraLines = ["持卡人身份证 33078219800101002X", "备注\u{1B}@\n下一行", "¥5"]
        for c in [content, vectorLegalAid, vectorReversal] {
            let lines = ReceiptLayout.lines(for: c)
            let text = lines.joined(separator: "\n")
            #expect(!text.contains(c.cardNumber) && !text.contains(c.holderName))
            #expect(text.range(of: #"\d{15,}"#, options: .regularExpression) == nil)
            #expect(lines.allSatisfy { $0.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F } })
        }
        let extra = ReceiptLayout.lines(for: content)
        #expect(extra.contains("持卡人身份证 3307**********002X") && extra.contains("备注 @ 下一行") && extra.contains("￥5"))
    }
}
