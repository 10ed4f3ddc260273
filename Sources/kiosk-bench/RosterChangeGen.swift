import ArgumentParser
import Foundation
import KioskProtocol
import KioskStore

/// Writes a signed roster change (sync spec §5) for benchmarks and labs: the roster lines
/// (programs, devices, persons, cards) of a snapshot file, and/or one card's new status.
/// Signed with the test authority key (TEST KEY), named `330782-roster-test`.
struct RosterChangeGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roster-change",
        abstract: "Write a signed roster change: a snapshot's roster lines, and/or one card's status (test key).")

    static let keyID = "330782-roster-test"

    @Option(help: "change_id (1–64 of A–Z a–z 0–9 . _ -).") var changeId: String
    @Option(help: "Output file.") var out: String
    @Option(help: "Take the program, device, person and card lines of this snapshot file.") var fromSnapshot: String?
    @Option(help: "A card whose status changes (with --person-ref and --status).") var card: String?
    @Option(help: "The card's person_ref.") var personRef: String?
    @Option(help: "The card's new status: active, lost, revoked, replaced.") var status = "lost"
    @Option(help: "issued_at (RFC 3339; default now).") var issuedAt: String?

    /// The value of a canonical line's `"type":"…"` member (a `"` can only open a key or a
    /// value there, escaped quotes inside strings being `\"`).
    static func type(of line: ArraySlice<UInt8>) -> String? {
        let needle = Array(#""type":""#.utf8)
        guard line.count > needle.count else { return nil }
        var i = line.startIndex
        while i + needle.count <= line.endIndex {
            if line[i] == needle[0], line[i..<i + needle.count].elementsEqual(needle) {
                let start = i + needle.count
                guard let end = line[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
                return String(decoding: line[start..<end], as: UTF8.self)
            }
            i += 1
        }
        return nil
    }

    func run() throws {
        let header: [String: Any] = ["format": "roster-change", "format_version": 1, "region": TestAuthority.region, "change_id": changeId,
                                     "issued_at": issuedAt ?? Timestamp.string(Date()), "roster_key_id": Self.keyID]
        let writer = try SnapshotWriter(url: URL(fileURLWithPath: out), header: header, authorityKey: try TestAuthority.privateKey())
        var records = 0
        if let fromSnapshot {
            // Streamed (a 10,000,000-person snapshot is ~3 GB); the lines are copied as they
            // are, their type read from the canonical `"type":"…"` member.
            try LineReader.each(URL(fileURLWithPath: fromSnapshot)) { line in
                guard let type = Self.type(of: line), ["program", "device", "person", "card"].contains(type) else { return }
                try writer.addRaw(String(decoding: line, as: UTF8.self))
                records += 1
            }
        }
        if let card {
            guard let personRef else { throw ValidationError("--card needs --person-ref") }
            try writer.add(["type": "card", "card_number": card, "person_ref": personRef, "status": status])
            records += 1
        }
        try writer.finish()
        print("roster_change change_id=\(changeId) records=\(records) key_id=\(Self.keyID) public_key=\(TestAuthority.publicKey)")
    }
}
