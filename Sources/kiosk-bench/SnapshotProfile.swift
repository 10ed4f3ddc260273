import ArgumentParser
import Crypto
import Foundation
import KioskProtocol

/// Where an install's time goes outside SQLite: the same reading, hashing and JSON work
/// as the installer, phase by phase, with no store. Install time less the last phase is
/// roughly the SQLite side.
struct SnapshotProfile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot-profile",
        abstract: "Time the non-SQLite phases of an install (read + SHA-256, JSON parse, field extraction) on a snapshot file.")

    @Option(help: "Snapshot file.") var file: String

    func run() throws {
        var records = 0
        let read = try phase("read_sha256") { _ in }
        let parse = try phase("read_sha256_json") { line in
            _ = try JSONSerialization.jsonObject(with: Data(line))
        }
        let fields = try phase("read_sha256_json_fields") { line in
            guard let o = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return }
            // What `SnapshotLoader.apply` reads of each record.
            let type = o["type"] as? String
            _ = o["op"] as? String
            switch type {
            case "person": _ = (o["person_ref"] as? String, o["status"] as? String, o["status_reason"] as? String, o["programs"] as? [String])
            case "card": _ = (o["card_number"] as? String, o["person_ref"] as? String, o["status"] as? String)
            case "usage": _ = (o["person_ref"] as? String, o["program"] as? String, o["period"] as? String, o["used_fen"] as? Int)
            default: break
            }
            records += 1
        }
        // The same fields through JSONDecoder into a struct, for comparison.
        let decoder = JSONDecoder()
        let decoded = try phase("read_sha256_jsondecoder") { line in
            _ = try decoder.decode(RecordLine.self, from: Data(line))
        }
        print(String(format: "profile jsondecoder_parse_s=%.2f", decoded - read))
        print(String(format: "profile records=%d read_sha256_s=%.2f json_parse_s=%.2f field_extract_s=%.2f non_sqlite_total_s=%.2f us_per_record=%.2f peak_rss_mb=%.1f",
                     records, read, parse - read, fields - parse, fields, fields / Double(max(records, 1)) * 1e6, Memory.peakMB()))
    }

    /// Every field the installer reads of a person, card or usage line.
    struct RecordLine: Decodable {
        var type: String
        var op: String?
        var person_ref: String?
        var status: String?
        var status_reason: String?
        var programs: [String]?
        var card_number: String?
        var program: String?
        var period: String?
        var used_fen: Int64?
    }

    /// One pass over the file: lines split as the installer does, each hashed, then `body`.
    func phase(_ name: String, _ body: (ArraySlice<UInt8>) throws -> Void) throws -> Double {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        let t0 = monotonicSeconds()
        var hasher = SHA256()
        var reader = LineReader(handle: handle)
        while let line = try reader.next() {
            hasher.update(data: Data(line))
            try body(line)
        }
        _ = hasher.finalize()
        let s = monotonicSeconds() - t0
        print(String(format: "profile phase=%@ seconds=%.2f", name, s))
        return s
    }
}
