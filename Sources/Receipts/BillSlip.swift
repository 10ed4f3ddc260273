import Crypto
import KioskProtocol
import Foundation

/// One slip for one hospital bill (receipt spec §1, amendment 2026-12-06): the bill and what
/// the patient pays appear once, each program's subsidy and allowance left on a line of its
/// own, then one QR code per settlement record (each the record's own signed receipt, as
/// `ReceiptJWS` makes it). Two slips for one bill would read as two payments.
///
/// The words are the screen's: 账单, 惠民卡减免, 今年还可减免, 您需支付 (printed in double
/// height and width), and beside the codes 二维码仅供核验，不是付款码 and 请保留此凭条.
public struct BillSlip: Sendable, Equatable {
    /// One program's part of the bill.
    public struct Part: Sendable, Equatable {
        /// The program as printed (its name, or `惠民医疗` when the receipt names none).
        public var program: String
        /// This program's subsidy (惠民卡减免), in fen.
        public var subsidyFen: Int64
        /// The program's allowance left this year after the subsidy (今年还可减免), in fen.
        public var allowanceLeftFen: Int64
        /// A part from its program and amounts in fen.
        public init(program: String, subsidyFen: Int64, allowanceLeftFen: Int64) {
            self.program = program; self.subsidyFen = subsidyFen; self.allowanceLeftFen = allowanceLeftFen
        }
    }

    /// The institution as people know it (its display name, else its code).
    public var institution: String
    /// The device that made the records.
    public var deviceID: String
    /// When, from the first record's receipt (printed in China Standard Time).
    public var time: Date
    /// The card number, printed masked.
    public var cardNumber: String
    /// The holder's name, printed masked.
    public var holderName: String
    /// The whole bill (账单), in fen.
    public var billFen: Int64
    /// What the patient pays of the whole bill (您需支付), in fen.
    public var patientPaysFen: Int64
    /// Each program's part, in the receipts' order.
    public var parts: [Part]
    /// The records' receipts, in `seq` order: each becomes a QR code with its record id under it.
    public var receipts: [ReceiptContent]
    /// Further lines printed after the programs, before 您需支付.
    public var extraLines: [String]

    /// The slip of a bill's subsidy receipts (every one a `.subsidy` of the same bill and card).
    /// - Throws: `BillSlipError` when they are not one bill.
    public init(receipts: [ReceiptContent], institution: String? = nil, extraLines: [String] = []) throws {
        guard let first = receipts.first, case .subsidy(let a) = first.body else { throw BillSlipError.notABill("no subsidy receipt") }
        var parts: [Part] = []
        for r in receipts {
            guard case .subsidy(let x) = r.body, x.billFen == a.billFen, x.patientPaysFen == a.patientPaysFen,
                  r.cardNumber == first.cardNumber, r.deviceID == first.deviceID else {
                throw BillSlipError.notABill("receipt \(r.recordID) is not of the same bill")
            }
            parts.append(Part(program: x.program ?? "惠民医疗", subsidyFen: x.subsidyFen, allowanceLeftFen: x.allowanceLeftFen))
        }
        self.institution = institution ?? first.institution
        deviceID = first.deviceID
        time = first.time
        cardNumber = first.cardNumber
        holderName = first.holderName
        billFen = a.billFen
        patientPaysFen = a.patientPaysFen
        self.parts = parts
        self.receipts = receipts
        self.extraLines = extraLines
    }

    /// The amount the patient pays, printed alone in double height and width (it fits 58 mm
    /// paper whatever the bill: at most 11 cells of 24 dots).
    public var paysLine: String { ReceiptFormat.yuan(patientPaysFen) + "元" }

    /// The lines above the codes: title first, 您需支付 last.
    public var headLines: [String] {
        var lines = [ReceiptKind.subsidy.title]
        lines.append("机构：" + ReceiptLayout.free(institution))
        lines.append("设备：" + ReceiptLayout.free(deviceID))
        lines.append("时间：" + ReceiptFormat.chinaTime(time))
        lines.append("卡号：" + ReceiptLayout.printable(Masking.cardNumber(cardNumber)))
        lines.append("姓名：" + ReceiptLayout.printable(Masking.name(holderName)))
        lines.append("账单：" + ReceiptFormat.yuan(billFen) + "元")
        for p in parts {
            lines.append(ReceiptLayout.free(p.program))
            lines.append("  惠民卡减免：" + ReceiptFormat.yuan(p.subsidyFen) + "元")
            lines.append("  今年还可减免：" + ReceiptFormat.yuan(p.allowanceLeftFen) + "元")
        }
        lines += extraLines.map(ReceiptLayout.free)
        lines.append("您需支付：")
        lines.append(paysLine)
        return lines
    }

    /// The lines under the codes.
    public static let footLines = ["二维码仅供核验，不是付款码", "请保留此凭条"]

    /// Every line as printed, in order (each record id just before its code, receipt spec §2).
    public var lines: [String] { headLines + receipts.map { "流水号：" + ReceiptLayout.free($0.recordID) } + Self.footLines }

    /// Signs each record's receipt and lays the slip out for `paper`.
    /// - Returns: the JWS of each code, in order, and the ESC/POS bytes.
    public func render(key: Curve25519.Signing.PrivateKey, paper: Paper) throws -> (jws: [String], escpos: [UInt8]) {
        let jws = try receipts.map { try ReceiptJWS.sign(content: $0, key: key) }
        let codes = zip(jws, receipts).map { (Array($0.0.utf8), "流水号：" + ReceiptLayout.free($0.1.recordID)) }
        return (jws, try ESCPOS.slip(head: headLines, large: [headLines.count - 1], codes: codes, foot: Self.footLines, paper: paper))
    }
}

/// Why receipts cannot make one bill's slip.
public enum BillSlipError: Error, CustomStringConvertible, Equatable {
    /// They are not all subsidies of one bill, card and device (or there are none), and why.
    case notABill(String)
    /// The error as one line.
    public var description: String {
        switch self { case .notABill(let why): return "not one bill's slip: \(why)" }
    }
}

extension ESCPOS {
    /// A slip of `head` lines (the first is the title; the lines at `large` printed in double
    /// height and width), then each code after its caption, then `foot`.
    public static func slip(head: [String], large: Set<Int>, codes: [(data: [UInt8], caption: String)], foot: [String],
                            paper: Paper) throws -> [UInt8] {
        var out: [UInt8] = [0x1B, 0x40, 0x1C, 0x26]            // ESC @, FS &
        for (i, line) in head.enumerated() {
            let bytes = try text(line)
            if i == 0 || large.contains(i) {
                let doubleWidthFits = bytes.count * halfWidthDots * 2 <= paper.dots
                out += [0x1B, 0x45, 0x01]                          // bold
                if i == 0 { out += [0x1B, 0x61, 0x01] }            // the title centred
                out += [0x1D, 0x21, doubleWidthFits ? 0x11 : 0x01] // double height (and width if it fits)
                out += bytes + [0x0A]
                out += [0x1D, 0x21, 0x00, 0x1B, 0x45, 0x00, 0x1B, 0x61, 0x00]
            } else {
                out += bytes + [0x0A]
            }
        }
        for code in codes {
            out += [0x1B, 0x64, 0x01]                              // one blank line before each record
            out += try text(code.caption) + [0x0A]                 // its record id, then its code
            out += rasterCommand(try packedQR(code.data, paper: paper))
        }
        for line in foot { out += try text(line) + [0x0A] }
        out += [0x1B, 0x64, 0x04]                                  // feed past the cutter
        out += [0x1D, 0x56, 0x42, 0x00]                            // GS V 66 0: feed and partial cut
        return out
    }
}
