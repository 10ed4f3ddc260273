import Crypto
import Foundation
import KioskProtocol
import KioskStore

/// One batch body as sent (upload spec §2): the envelope written field by field and the
/// records array made by joining the stored record texts verbatim, so the bytes of each
/// record on the wire are exactly the bytes committed on the kiosk.
public struct BatchBody: Sendable, Equatable {
    /// `batch_id`: a fresh UUID for every batch sent.
    public let batchID: String
    /// `device_id`: the sending device, the path's.
    public let deviceID: String
    /// `sent_at`, RFC 3339 UTC.
    public let sentAt: String
    /// The record ids, in order, as the answer must repeat them.
    public let recordIDs: [String]
    /// The exact body bytes; `X-Signature` covers them.
    public let bytes: [UInt8]

    /// - Parameter records: record JSON texts, in `seq` order, used verbatim.
    public init(batchID: String, deviceID: String, sentAt: String, records: [(recordID: String, body: String)]) {
        self.batchID = batchID
        self.deviceID = deviceID
        self.sentAt = sentAt
        recordIDs = records.map(\.recordID)
        var out = BatchBody.envelopeHead(batchID: batchID, deviceID: deviceID, sentAt: sentAt)
        out.reserveCapacity(out.count + records.reduce(2) { $0 + $1.body.utf8.count + 1 })
        for (i, r) in records.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: r.body.utf8)
        }
        out.append(contentsOf: "]}".utf8)
        bytes = out
    }

    /// The body of stored records, their texts used verbatim, in the order given (`seq` order).
    public init(batchID: String, deviceID: String, sentAt: String, records: [StoredRecord]) {
        self.init(batchID: batchID, deviceID: deviceID, sentAt: sentAt, records: records.map { ($0.recordID, $0.body) })
    }

    /// The body length without any record: what the record budget of 1 MiB must leave room for.
    public static func envelopeLength(batchID: String, deviceID: String, sentAt: String) -> Int {
        envelopeHead(batchID: batchID, deviceID: deviceID, sentAt: sentAt).count + 2   // + "]}"
    }

    /// `{"batch_id":…,"device_id":…,"sent_at":…,"records":[`: the body up to the first record.
    static func envelopeHead(batchID: String, deviceID: String, sentAt: String) -> [UInt8] {
        var out: [UInt8] = []
        out.append(contentsOf: #"{"batch_id":"#.utf8)
        JSONText.appendString(batchID, to: &out)
        out.append(contentsOf: #","device_id":"#.utf8)
        JSONText.appendString(deviceID, to: &out)
        out.append(contentsOf: #","sent_at":"#.utf8)
        JSONText.appendString(sentAt, to: &out)
        out.append(contentsOf: #","records":["#.utf8)
        return out
    }

    /// `X-Signature`: base64 Ed25519 by the device key over the exact body bytes.
    public func signature(with key: Curve25519.Signing.PrivateKey) throws -> String {
        try key.signature(for: bytes).base64EncodedString()
    }
}


/// A hub's `200` answer, checked against the batch it answers (upload spec §3).
public enum BatchAnswer {
    /// Why a `200` answer cannot be believed. Nothing of the batch is marked then.
    public enum Nonsense: Error, Equatable, CustomStringConvertible {
        /// The body is not a JSON object.
        case notJSON
        /// No `results` array.
        case noResults
        /// Not one result per record.
        case wrongCount(expected: Int, got: Int)
        /// A result for another record than the batch's at that place.
        case wrongRecordID(index: Int, expected: String, got: String?)
        /// A status other than `accepted`, `duplicate` or `rejected`.
        case unknownStatus(recordID: String, status: String?)
        /// An accepted or duplicate result without an RFC 3339 `received_at`.
        case badReceivedAt(recordID: String, value: String?)
        /// A rejected result without a reason.
        case missingReason(recordID: String)

        /// The nonsense in one line.
        public var description: String {
            switch self {
            case .notJSON: return "the answer is not a JSON object"
            case .noResults: return "the answer has no results array"
            case .wrongCount(let e, let g): return "the answer has \(g) results for \(e) records"
            case .wrongRecordID(let i, let e, let g): return "result \(i) is for \(g ?? "no record_id"), expected \(e)"
            case .unknownStatus(let r, let s): return "result for \(r) has status \(s.map { "\"\($0)\"" } ?? "missing")"
            case .badReceivedAt(let r, let v): return "result for \(r) has received_at \(v.map { "\"\($0)\"" } ?? "missing")"
            case .missingReason(let r): return "result for \(r) is rejected without a reason"
            }
        }
    }

    /// One checked result per record, in batch order, plus how many were duplicates.
    public struct Checked: Sendable, Equatable {
        /// The results, in batch order (`duplicate` as accepted).
        public var results: [DeliveryResult]
        /// How many results were `duplicate`.
        public var duplicates: Int
    }

    /// Checks every result: same count, same record ids in the same order, a known status,
    /// an RFC 3339 `received_at` for accepted/duplicate, a reason for rejected.
    public static func check(_ data: [UInt8], recordIDs: [String]) throws(Nonsense) -> Checked {
        guard let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else { throw .notJSON }
        guard let results = object["results"] as? [Any] else { throw .noResults }
        guard results.count == recordIDs.count else { throw .wrongCount(expected: recordIDs.count, got: results.count) }
        var out: [DeliveryResult] = []
        out.reserveCapacity(results.count)
        var duplicates = 0
        for (i, (item, expected)) in zip(results, recordIDs).enumerated() {
            guard let r = item as? [String: Any] else { throw .wrongRecordID(index: i, expected: expected, got: nil) }
            let id = r["record_id"] as? String
            guard id == expected else { throw .wrongRecordID(index: i, expected: expected, got: id) }
            let status = r["status"] as? String
            switch status {
            case "accepted", "duplicate":
                let at = r["received_at"] as? String
                guard let at, ReceivedAt.normalise(at) != nil else { throw .badReceivedAt(recordID: expected, value: at) }
                if status == "duplicate" { duplicates += 1 }
                out.append(DeliveryResult(recordID: expected, outcome: .accepted(receivedAt: at)))
            case "rejected":
                guard let reason = r["reason"] as? String, !reason.isEmpty else { throw .missingReason(recordID: expected) }
                out.append(DeliveryResult(recordID: expected, outcome: .rejected(reason: reason)))
            default:
                throw .unknownStatus(recordID: expected, status: status)
            }
        }
        return Checked(results: out, duplicates: duplicates)
    }
}
