import Crypto
import KioskProtocol
import Foundation
import HubRules
import HubStore
import Synchronization
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOCore

/// The batch endpoint's steps (upload spec §2–3, §5): the body read against the limit, the
/// envelope checked, the batch's roster, and the answer written.
extension SettlementHub {
    /// The batch's body, read against `limits.maxBytes` as it arrives.
    /// - Throws: `Stop` with the answer: `413 too_large` (the connection closed) or `400 unreadable`.
    func readBatchBody(_ request: Request, limits: HubLimits) async throws(Stop) -> [UInt8] {
        do {
            // Read against the limit as it arrives: one byte over ends the read.
            var buffer = try await request.body.collect(upTo: min(limits.maxBytes, Self.readLimit))
            return buffer.readBytes(length: buffer.readableBytes) ?? []
        } catch is NIOTooManyBytesError {
            throw Stop(response: Self.error(.contentTooLarge, "too_large", "the batch is larger than \(limits.maxBytes) bytes", close: true))
        } catch {
            throw Stop(response: Self.error(.badRequest, "unreadable", "the body could not be read"))
        }
    }

    /// The batch envelope and its records read from `bytes`, at most `limits.maxRecords` of them.
    /// - Throws: `Stop` with the answer: `400 malformed` or `413 too_many_records`.
    static func readBatch(_ bytes: [UInt8], deviceID: String, limits: HubLimits, log: Logger) throws(Stop) -> Batch {
        let batch: Batch
        do {
            batch = try Batch(bytes, pathDeviceID: deviceID)
        } catch let e as Batch.Malformed {
            log.warning("malformed batch", metadata: ["why": "\(e.message)"])
            throw Stop(response: Self.error(.badRequest, "malformed", e.message))
        } catch {
            throw Stop(response: Self.error(.badRequest, "malformed", "\(error)"))
        }
        guard batch.records.count <= limits.maxRecords else {
            throw Stop(response: Self.error(.contentTooLarge, "too_many_records", "the batch has \(batch.records.count) records; at most \(limits.maxRecords)"))
        }
        return batch
    }

    /// The batch's view of the roster: every program and the cards it names (flat memory).
    /// - Throws: `Stop` with `503 database_error` when the cards cannot be read (nothing stored).
    func rosterForBatch(_ batch: Batch, log: Logger) async throws(Stop) -> Roster {
        let cards = Set(batch.records.compactMap { $0.record?.medicalSubsidy?.cardNumber ?? $0.record?.legalAidApplication?.cardNumber })
        do {
            if let cached = view.cachedBatchRoster(cards: cards) { return cached }
            return try await BlockingWork.offload { try self.view.batchRoster(cards: cards) }
        } catch {
            // A card read as unknown would be refused for good (its first answer is kept).
            log.error("cards unreadable: nothing stored", metadata: ["error": "\(error)"])
            throw Stop(response: Self.databaseUnavailable())
        }
    }

    /// Logs the answers worth an operator's look: a sequence gap, a refusal, flags.
    static func logResults(_ results: [RecordResult], log: Logger) {
        for r in results {
            switch r.status {
            case .rejected("seq_gap", let detail):
                // The kiosk's queue is gapless: a gap means records lost or forged (upload spec §5 step 3).
                log.error("sequence gap: records lost or forged", metadata: ["record_id": "\(r.recordID ?? "-")", "detail": "\(detail ?? "")"])
            case .rejected(let reason, let detail):
                log.notice("record rejected", metadata: ["record_id": "\(r.recordID ?? "-")", "reason": "\(reason)", "detail": "\(detail ?? "")"])
            case .accepted(_, let flags) where !flags.isEmpty:
                // Flags, not refusals: stored and counted, raised to the platform's operators.
                log.warning("record accepted with flags", metadata: ["record_id": "\(r.recordID ?? "-")", "flags": "\(flags.joined(separator: ","))"])
            default:
                break
            }
        }
    }

    /// The answer to a stored batch: its results.
    static func batchAnswer(_ results: [RecordResult]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: Self.resultsJSON(results))))
    }

    /// A checked batch envelope and each record: its exact bytes and the `seq` its
    /// `record_id` names. A batch is malformed (`400`, upload spec §5 step 1) unless every
    /// record is a JSON object whose `record_id` is `<path device_id>-<seq>`.
    struct Batch {
        struct Malformed: Error { var message: String }
        var batchID: String
        var sentAt: String
        var records: [IncomingRecord]

        init(_ bytes: [UInt8], pathDeviceID: String) throws {
            let members: [(key: String, value: Range<Int>)]
            do { members = try StrictJSON.objectMembers(bytes) } catch let e as StrictJSON.SyntaxError {
                throw Malformed(message: "the body is not a JSON object: \(e)")
            }
            var fields: [String: Range<Int>] = [:]
            for m in members {
                guard fields[m.key] == nil else { throw Malformed(message: "duplicate member \"\(m.key)\"") }
                fields[m.key] = m.value
            }
            func string(_ name: String) throws -> String {
                guard let r = fields[name], let s = try? JSONSerialization.jsonObject(with: Data(bytes[r]), options: [.fragmentsAllowed]) as? String,
                      !s.isEmpty else { throw Malformed(message: "\(name) must be a non-empty string") }
                return s
            }
            batchID = try string("batch_id")
            let deviceID = try string("device_id")
            guard deviceID == pathDeviceID else { throw Malformed(message: "device_id \(deviceID) differs from the path's \(pathDeviceID)") }
            sentAt = try string("sent_at")
            guard Timestamp.date(sentAt) != nil else { throw Malformed(message: "sent_at must be an RFC 3339 time") }
            guard let r = fields["records"], let elements = try StrictJSON.arrayElements(bytes, in: r) else {
                throw Malformed(message: "records must be an array")
            }
            records = try elements.enumerated().map { i, range in
                let record = Array(bytes[range])
                guard let members = RecordMembers(record) else { throw Malformed(message: "record \(i) is not a JSON object") }
                guard case .string(let recordID)? = members.flat["record_id"], !members.duplicates.contains("record_id") else {
                    throw Malformed(message: "record \(i) has no record_id (or more than one)")
                }
                guard let seq = RecordRules.sequence(recordID: recordID, deviceID: pathDeviceID) else {
                    throw Malformed(message: "record \(i): record_id \(recordID) is not <\(pathDeviceID)>-<seq>: not a record of the signing device")
                }
                return IncomingRecord(bytes: record, sha256: Hex.encode(SHA256.hash(data: record)), recordID: recordID, seq: seq, members: members)
            }
        }
    }

    // MARK: answers

    /// The results as the hub answers them: `{"results":[…]}`, one object per record in batch order.
    package static func resultsJSON(_ results: [RecordResult]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(results.count * 96 + 16)
        out.append(contentsOf: #"{"results":["#.utf8)
        for (i, r) in results.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"record_id":"#.utf8)
            if let id = r.recordID { JSONText.appendString(id, to: &out) } else { out.append(contentsOf: "null".utf8) }
            func appendFlags(_ flags: [String]) {
                guard !flags.isEmpty else { return }
                out.append(contentsOf: #","flags":["#.utf8)
                for (k, f) in flags.enumerated() {
                    if k > 0 { out.append(UInt8(ascii: ",")) }
                    JSONText.appendString(f, to: &out)
                }
                out.append(UInt8(ascii: "]"))
            }
            switch r.status {
            case .accepted(let at, let flags):
                out.append(contentsOf: #","status":"accepted","received_at":"#.utf8)
                JSONText.appendString(at, to: &out)
                appendFlags(flags)
            case .duplicate(let at, let flags):
                out.append(contentsOf: #","status":"duplicate","received_at":"#.utf8)
                JSONText.appendString(at, to: &out)
                appendFlags(flags)
            case .rejected(let reason, let detail):
                out.append(contentsOf: #","status":"rejected","reason":"#.utf8)
                JSONText.appendString(reason, to: &out)
                if let detail {
                    out.append(contentsOf: #","detail":"#.utf8)
                    JSONText.appendString(detail, to: &out)
                }
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }
}
