import KioskProtocol
/// The printed text of a receipt (receipt.md §2), Chinese first; the QR code follows these lines.
public enum ReceiptLayout {
    /// The legal-aid priority note.
    public static let legalAidPriority = "优先受理、优先审批、优先指派"

    /// The receipt's lines (receipt.md §2), title first, record id last. A subsidy prints the whole bill, the
    /// program (when known) and its part, what the patient pays of the whole bill and the program's allowance left
    /// this year; a reversal the record it reverses and the amount given back; a legal-aid application the matter
    /// and the priority note. The card number and name appear only masked;
    /// identity-like digit runs in free text are masked; control characters become spaces and `¥` becomes
    /// `￥`, so every line prints as it reads in the printer's GB18030 mode.
    public static func lines(for content: ReceiptContent) -> [String] {
        var lines = [content.kind.title]
        lines.append("机构：" + free(content.institution))
        lines.append("设备：" + free(content.deviceID))
        lines.append("时间：" + ReceiptFormat.chinaTime(content.time))
        lines.append("卡号：" + printable(Masking.cardNumber(content.cardNumber)))
        lines.append("姓名：" + printable(Masking.name(content.holderName)))
        switch content.body {
        case .subsidy(let a):
            lines.append("票据金额：" + ReceiptFormat.yuan(a.billFen) + "元")
            if let program = a.program { lines.append("贴补项目：" + free(program)) }
            lines.append("贴补金额：" + ReceiptFormat.yuan(a.subsidyFen) + "元")
            lines.append("个人支付：" + ReceiptFormat.yuan(a.patientPaysFen) + "元")
            lines.append("本年剩余额度：" + ReceiptFormat.yuan(a.allowanceLeftFen) + "元")
        case .reversal(let r):
            lines.append("原流水号：" + free(content.deviceID + "-\(r.reversedSeq)"))
            lines.append("冲正金额：" + ReceiptFormat.yuan(r.amountFen) + "元")
            lines.append("冲正原因：" + free(r.reason))
        case .legalAid(let m):
            lines.append("申请事项：" + free(m.name))
            lines.append(legalAidPriority)
        }
        lines += content.extraLines.map(free)
        lines.append("流水号：" + free(content.recordID))
        return lines
    }

    /// The lines as one text, for a preview on screen or in a log-free file.
    public static func text(for content: ReceiptContent) -> String {
        lines(for: content).joined(separator: "\n")
    }

    static func free(_ text: String) -> String {
        printable(Masking.identityNumbers(in: text))
    }

    /// Control characters (C0, DEL, C1, line and paragraph separators) become spaces, so no content can
    /// inject a printer command or break a line; `¥` (four bytes in GB18030, missing from GBK fonts)
    /// becomes the full-width `￥` (A3 A4).
    public static func printable(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x00..<0x20, 0x7F..<0xA0, 0x2028, 0x2029: out.append(" ")
            case 0xA5: out.append("\u{FFE5}")
            default: out.append(scalar)
            }
        }
        return String(out)
    }
}
