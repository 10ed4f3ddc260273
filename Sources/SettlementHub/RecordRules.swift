import Foundation

/// The outcome of checking one record of a batch (upload spec §1).
enum RecordCheck: Sendable {
    struct Valid: Sendable {
        var recordID: String
        var seq: Int64
        var kind: String
    }
    case valid(Valid)
    /// Rejected with `reason` (the spec's answer) and a `detail` for people.
    case invalid(recordID: String?, reason: String, detail: String?)
}

/// Upload spec §1: the fields every record has and those of each kind.
enum RecordRules {
    static let kinds: [String: [(String, FieldType)]] = [
        "medical_subsidy": [
            ("card_number", .string), ("id_hash", .string), ("program", .string), ("period", .string),
            ("bill_reference", .string), ("bill_fen", .integer), ("subsidy_fen", .integer), ("patient_pays_fen", .integer),
            ("used_before_fen", .integer), ("used_after_fen", .integer), ("card_sequence", .integer), ("institution", .string),
        ],
        "subsidy_reversal": [("reverses", .string), ("amount_fen", .integer), ("reason", .string), ("operator", .string)],
        "legal_aid_application": [("card_number", .string), ("id_hash", .string), ("program", .string), ("matter", .string),
                                  ("priority", .boolean)],
        "alert": [("code", .string), ("detail", .string)],
    ]

    enum FieldType { case string, integer, boolean }

    /// Checks a record's JSON for the device `deviceID` (the one whose key signed the batch).
    static func check(_ bytes: [UInt8], deviceID: String) -> RecordCheck {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            return .invalid(recordID: nil, reason: "malformed_record", detail: "a record is not a JSON object")
        }
        let recordID = object["record_id"] as? String
        var missing: [String] = []
        if recordID == nil { missing.append("record_id") }
        let seq = integer(object["seq"])
        if seq == nil { missing.append("seq") }
        let kind = object["kind"] as? String
        if kind == nil { missing.append("kind") }
        let createdAt = object["created_at"] as? String
        if createdAt == nil { missing.append("created_at") }
        if object["snapshot_id"] == nil || !(object["snapshot_id"] is String || object["snapshot_id"] is NSNull) { missing.append("snapshot_id") }
        guard missing.isEmpty, let recordID, let seq, let kind, let createdAt else {
            return .invalid(recordID: recordID, reason: "missing_fields", detail: missing.joined(separator: ","))
        }
        guard recordID.hasPrefix(deviceID + "-") else {
            return .invalid(recordID: recordID, reason: "device_mismatch", detail: "record_id is not of device \(deviceID)")
        }
        guard seq >= 1, recordID == "\(deviceID)-\(seq)" else {
            return .invalid(recordID: recordID, reason: "bad_record_id", detail: "record_id must be <device_id>-<seq>")
        }
        guard let fields = kinds[kind] else {
            return .invalid(recordID: recordID, reason: "unknown_kind", detail: kind)
        }
        guard isRFC3339(createdAt) else {
            return .invalid(recordID: recordID, reason: "bad_created_at", detail: createdAt)
        }
        var wrong: [String] = []
        for (name, type) in fields {
            guard let v = object[name] else { missing.append(name); continue }
            switch type {
            case .string: if !(v is String) { wrong.append(name) }
            case .integer: if integer(v) == nil { wrong.append(name) }
            case .boolean: if !isBoolean(v) { wrong.append(name) }
            }
        }
        if !missing.isEmpty { return .invalid(recordID: recordID, reason: "missing_fields", detail: missing.joined(separator: ",")) }
        if !wrong.isEmpty { return .invalid(recordID: recordID, reason: "bad_fields", detail: wrong.joined(separator: ",")) }
        return .valid(.init(recordID: recordID, seq: seq, kind: kind))
    }

    /// An integral JSON number (not a boolean).
    static func integer(_ v: Any?) -> Int64? {
        guard let v, !isBoolean(v) else { return nil }
        if let i = v as? Int64 { return i }
        if let i = v as? Int { return Int64(i) }
        if let d = v as? Double, d.rounded() == d, abs(d) < 9e15 { return Int64(d) }
        return nil
    }

    /// A JSON `true`/`false` (Foundation gives NSNumbers; a boolean's type code is "c").
    static func isBoolean(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return n.objCType.pointee == 0x63
    }

    /// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
    static func isRFC3339(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count >= 20 else { return false }
        func d(_ k: Int) -> Bool { b[k] >= 0x30 && b[k] <= 0x39 }
        guard d(0), d(1), d(2), d(3), b[4] == 0x2D, d(5), d(6), b[7] == 0x2D, d(8), d(9), b[10] == 0x54 || b[10] == 0x74,
              d(11), d(12), b[13] == 0x3A, d(14), d(15), b[16] == 0x3A, d(17), d(18) else { return false }
        var i = 19
        if b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.count && d(i) { i += 1 }
            guard i > start else { return false }
        }
        guard i < b.count else { return false }
        if b[i] == 0x5A || b[i] == 0x7A { return i + 1 == b.count }
        guard b[i] == 0x2B || b[i] == 0x2D, i + 6 == b.count, d(i + 1), d(i + 2), b[i + 3] == 0x3A, d(i + 4), d(i + 5) else { return false }
        return true
    }
}
