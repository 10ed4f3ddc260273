import ArgumentParser
import Foundation
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

    func run() throws {
        let header: [String: Any] = ["format": "roster-change", "format_version": 1, "region": TestAuthority.region, "change_id": changeId,
                                     "issued_at": issuedAt ?? Timestamp.string(Date()), "roster_key_id": Self.keyID]
        let writer = try SnapshotWriter(url: URL(fileURLWithPath: out), header: header, authorityKey: try TestAuthority.privateKey())
        var records = 0
        if let fromSnapshot {
            let text = try String(contentsOfFile: fromSnapshot, encoding: .utf8)
            for line in text.split(separator: "\n") {
                guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      ["program", "device", "person", "card"].contains(o["type"] as? String ?? "") else { continue }
                try writer.add(o)
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
