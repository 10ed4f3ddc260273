import KioskProtocol
import Foundation

/// The three kinds of receipt, with the code each carries in the QR payload (`k`, receipt.md §1).
public enum ReceiptKind: String, Sendable, CaseIterable {
    /// A medical subsidy (`ms`): 惠民医疗费用贴补凭条.
    case subsidy = "ms"
    /// A reversal of an earlier record (`rv`): 冲正凭条.
    case reversal = "rv"
    /// A legal-aid application (`la`): 法律援助申请回执.
    case legalAid = "la"

    /// The printed title of this kind of receipt.
    public var title: String {
        switch self {
        case .subsidy: return "惠民医疗费用贴补凭条"
        case .reversal: return "冲正凭条"
        case .legalAid: return "法律援助申请回执"
        }
    }
}

/// The amounts of a medical subsidy, all in fen (1 yuan = 100 fen). A bill shared by several programs
/// prints one receipt per record: `subsidyFen` and `allowanceLeftFen` are that program's, `billFen` and
/// `patientPaysFen` the whole bill's (receipt.md §1).
public struct SubsidyAmounts: Sendable, Equatable {
    /// The bill presented, the whole bill (票据金额; `b`).
    public var billFen: Int64
    /// What this record's program paid (贴补金额; `s`).
    public var subsidyFen: Int64
    /// What the patient still pays of the whole bill after every program (个人支付; `p`).
    public var patientPaysFen: Int64
    /// What is left of this program's allowance this year after this subsidy (本年剩余额度; `l`).
    public var allowanceLeftFen: Int64
    /// The program, as printed (its name, else its code); `nil` leaves the line out. Not signed.
    public var program: String?

    /// Amounts in fen.
    public init(billFen: Int64, subsidyFen: Int64, patientPaysFen: Int64, allowanceLeftFen: Int64, program: String? = nil) {
        self.billFen = billFen
        self.subsidyFen = subsidyFen
        self.patientPaysFen = patientPaysFen
        self.allowanceLeftFen = allowanceLeftFen
        self.program = program
    }
}

/// What a reversal undoes: a record of the same device.
public struct ReversalDetails: Sendable, Equatable {
    /// The `seq` of the record being reversed (`v`); its record id is `<device_id>-<seq>`.
    public var reversedSeq: Int64
    /// The amount given back, in fen (冲正金额; `s`).
    public var amountFen: Int64
    /// Why (冲正原因), free text; printed, not signed.
    public var reason: String

    /// The reversed record's `seq`, the amount in fen, the reason.
    public init(reversedSeq: Int64, amountFen: Int64, reason: String) {
        self.reversedSeq = reversedSeq
        self.amountFen = amountFen
        self.reason = reason
    }
}

/// The matter a legal-aid application is about.
public struct LegalAidMatter: Sendable, Equatable {
    /// The matter code (`m` in the QR payload), e.g. `labor_remuneration`.
    public var code: String
    /// Its printed name, e.g. 请求支付劳动报酬.
    public var name: String

    /// A matter code and its printed name.
    public init(code: String, name: String) {
        self.code = code
        self.name = name
    }
}

/// Everything one receipt says, in clear. The card number and the holder name are held in
/// full and masked by every output (layout, QR payload, ESC/POS); nothing here is stored.
public struct ReceiptContent: Sendable, Equatable {
    /// What the receipt is about, with the fields that kind needs.
    public enum Body: Sendable, Equatable {
        /// A subsidy's amounts.
        case subsidy(SubsidyAmounts)
        /// A reversal's details.
        case reversal(ReversalDetails)
        /// A legal-aid application's matter.
        case legalAid(LegalAidMatter)
    }

    /// The record's `seq` (`r`): the device's own counter (for a reversal, the reversal's own record).
    public var seq: Int64
    /// The institution the kiosk stands in (its code or name).
    public var institution: String
    /// The device that made the record; also the JWS `kid`.
    public var deviceID: String
    /// When the record was made.
    public var time: Date
    /// The full card number; printed and signed only masked (`Masking.cardNumber`).
    public var cardNumber: String
    /// The holder's full name; printed only masked (`Masking.name`), never signed.
    public var holderName: String
    /// The kind-specific part.
    public var body: Body
    /// Further lines printed after the amounts and before the record id (identity numbers in them are masked).
    public var extraLines: [String]

    /// A receipt of any kind; see also `subsidy(…)`, `reversal(…)` and `legalAid(…)`.
    public init(seq: Int64, institution: String, deviceID: String, time: Date, cardNumber: String,
                holderName: String, body: Body, extraLines: [String] = []) {
        self.seq = seq
        self.institution = institution
        self.deviceID = deviceID
        self.time = time
        self.cardNumber = cardNumber
        self.holderName = holderName
        self.body = body
        self.extraLines = extraLines
    }

    /// The settlement record's `record_id`, `<device_id>-<seq>` (upload.md §1).
    public var recordID: String { "\(deviceID)-\(seq)" }

    /// For a reversal, the `record_id` of the record it reverses (same device); otherwise `nil`.
    public var reversedRecordID: String? {
        guard case .reversal(let r) = body else { return nil }
        return "\(deviceID)-\(r.reversedSeq)"
    }

    /// The kind of receipt, from its body.
    public var kind: ReceiptKind {
        switch body {
        case .subsidy: return .subsidy
        case .reversal: return .reversal
        case .legalAid: return .legalAid
        }
    }

    /// A medical-subsidy receipt (one record: one program's part of the bill).
    public static func subsidy(seq: Int64, institution: String, deviceID: String, time: Date, cardNumber: String,
                               holderName: String, billFen: Int64, subsidyFen: Int64, patientPaysFen: Int64,
                               allowanceLeftFen: Int64, program: String? = nil, extraLines: [String] = []) -> ReceiptContent {
        ReceiptContent(seq: seq, institution: institution, deviceID: deviceID, time: time, cardNumber: cardNumber,
                       holderName: holderName,
                       body: .subsidy(SubsidyAmounts(billFen: billFen, subsidyFen: subsidyFen, patientPaysFen: patientPaysFen,
                                                     allowanceLeftFen: allowanceLeftFen, program: program)),
                       extraLines: extraLines)
    }

    /// A reversal receipt: `reversedSeq` is the `seq` of the reversed record of the same device.
    public static func reversal(seq: Int64, institution: String, deviceID: String, time: Date, cardNumber: String,
                                holderName: String, reversedSeq: Int64, amountFen: Int64, reason: String,
                                extraLines: [String] = []) -> ReceiptContent {
        ReceiptContent(seq: seq, institution: institution, deviceID: deviceID, time: time, cardNumber: cardNumber,
                       holderName: holderName,
                       body: .reversal(ReversalDetails(reversedSeq: reversedSeq, amountFen: amountFen, reason: reason)),
                       extraLines: extraLines)
    }

    /// A legal-aid application receipt.
    public static func legalAid(seq: Int64, institution: String, deviceID: String, time: Date, cardNumber: String,
                                holderName: String, matterCode: String, matterName: String,
                                extraLines: [String] = []) -> ReceiptContent {
        ReceiptContent(seq: seq, institution: institution, deviceID: deviceID, time: time, cardNumber: cardNumber,
                       holderName: holderName, body: .legalAid(LegalAidMatter(code: matterCode, name: matterName)),
                       extraLines: extraLines)
    }
}

/// How amounts and times are printed.
public enum ReceiptFormat {
    /// Fen as yuan with two decimals: `10000` → `100.00`, `-5` → `-0.05`.
    public static func yuan(_ fen: Int64) -> String {
        let magnitude = fen.magnitude
        let cents = magnitude % 100
        return (fen < 0 ? "-" : "") + "\(magnitude / 100)." + (cents < 10 ? "0" : "") + "\(cents)"
    }

    /// China Standard Time (UTC+8, no daylight saving), `yyyy-MM-dd HH:mm:ss`.
    public static func chinaTime(_ date: Date) -> String {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down)) + 8 * 3600
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let secondOfDay = seconds - days * 86400
        let (y, m, d) = CivilCalendar.date(days: days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(y)-\(two(m))-\(two(d)) \(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60))"
    }
}
