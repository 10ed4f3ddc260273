import BenefitCard
import Crypto
import KioskProtocol
import Foundation
import KioskCore
import KioskStore
import Receipts
import HubHTTP
import HubStore
import SmartCard

/// A fuzz target: bytes in, no crash out. A throw is a refusal, which is fine; a trap
/// (a failed `check`, a Swift runtime error, an ASan report) is a finding.
struct FuzzTarget: Sendable {
    var name: String
    var what: String
    var run: @Sendable ([UInt8]) -> Void
}

/// A property that must hold: traps (libFuzzer reports it as a crash) when it does not.
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("property failed: \(message())", file: file, line: line) }
}

enum FuzzTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "tlv", what: "BER-TLV (SmartCard TLV)", run: tlv),
        FuzzTarget(name: "holder", what: "EF.HOLDER (BenefitCard Holder(object:))", run: holder),
        FuzzTarget(name: "usage", what: "EF.USAGE (UsageRecord(fileBytes:))", run: usage),
        FuzzTarget(name: "certificate", what: "device certificate 7F21 (DeviceCertificate(bytes:))", run: certificate),
        FuzzTarget(name: "snapshot", what: "snapshot file (KioskStore.installSnapshot into a scratch store)", run: snapshot),
        FuzzTarget(name: "batch", what: "hub batch body (SettlementHub.Batch, RecordRules.structure)", run: batch),
        FuzzTarget(name: "bill", what: "bill API body (BillRequest.parse)", run: bill),
        FuzzTarget(name: "escpos", what: "ESC/POS stream (ESCPOSDecoder.decode)", run: escpos),
    ]
    static let names = all.map(\.name)
    static let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
    // nonisolated(unsafe), and why it is safe: main.swift sets it once, before libFuzzer (or the
    // corpus replayer) starts; from then on it is only read, and libFuzzer calls the target on
    // the one thread that called LLVMFuzzerRunDriver.
    nonisolated(unsafe) static var selected: FuzzTarget?

    // MARK: BER-TLV

    static func tlv(_ bytes: [UInt8]) {
        // A sequence with padding: re-encoding what was read reads back the same objects.
        if let objects = try? TLV.parseAll(bytes) {
            let again = objects.flatMap(\.encoded)
            check((try? TLV.parseAll(again)) == objects, "parseAll(encode(parseAll(x))) != parseAll(x)")
            for o in objects { walk(o, depth: 0) }
        }
        // One object: its encoding is the canonical form of what was read; when the input used
        // the shortest length form, the bytes are the input's object bytes exactly.
        if let (object, raw) = try? TLV.parseSingle(bytes) {
            let encoded = object.encoded
            let reparsed = try? TLV.parse(encoded)
            check(reparsed?.0 == object && reparsed?.1 == encoded.count, "parse(encode(o)) != o")
            check(encoded.count <= raw.count, "encoding longer than the input")
            let minimalHeader = object.tagBytes.count + TLV.encodeLength(object.value.count).count
            if raw.count - object.value.count == minimalHeader {
                check(encoded == raw, "encode(parse(x)) != x's object bytes")
            }
        }
    }

    /// Children of constructed objects parse or throw, never trap.
    static func walk(_ o: TLV, depth: Int) {
        guard depth < 16, o.isConstructed, let children = try? o.children() else { return }
        for c in children { walk(c, depth: depth + 1) }
    }

    // MARK: EF.HOLDER

    static func holder(_ bytes: [UInt8]) {
        // As the card session reads the file: one object, padding after it.
        if let (object, _) = try? TLV.parseSingle(bytes) { checkHolder(object) }
        // And the bytes as the value of a `70` template, to reach the field checks sooner.
        checkHolder(TLV(tag: 0x70, value: bytes))
    }

    static func checkHolder(_ object: TLV) {
        guard let h = try? Holder(object: object) else { return }
        check(h.cardNumber.utf8.count == 16 && h.personRef.utf8.count == 32 && h.cardPublicKey.count == 32,
              "holder fields out of their lengths")
        check(h.issued <= h.expires, "holder expires before it was issued")
        _ = h.isExpired(at: Date(timeIntervalSince1970: 1_800_000_000))
        check(!KioskProtocol.Masking.name(h.name).isEmpty && !KioskProtocol.Masking.cardNumber(h.cardNumber).isEmpty, "an empty masked field")
        _ = h.category.description
    }

    // MARK: EF.USAGE

    static func usage(_ bytes: [UInt8]) {
        guard let record = try? UsageRecord(fileBytes: bytes) else { return }
        // `object` is the file's object bytes as read: it parses to the same record.
        let reread = try? UsageRecord(fileBytes: record.object)
        check(reread == record, "UsageRecord(fileBytes: r.object) != r")
        // Rebuilt from its parts, it is the same record (the canonical encoding).
        let rebuilt = UsageRecord(sequence: record.sequence, body: record.body)
        if let parsed = try? UsageRecord(fileBytes: rebuilt.object) {
            check(parsed.sequence == record.sequence && parsed.body == record.body, "rebuilt usage record differs")
        } else {
            check(false, "a record rebuilt from a parsed one does not parse")
        }
        _ = record.digest
        _ = record.writtenAtDate
        if let body = record.body {
            check((1...3).contains(body.entries.count), "usage record with \(body.entries.count) entries")
            _ = UsageRecord.chinaStandardDate(ofWrittenAt: body.writtenAt)
            _ = try? record.next(period: body.period, setting: [(body.entries[0].program, body.entries[0].usedFen + 1)])
        }
    }

    // MARK: device certificate

    static func certificate(_ bytes: [UInt8]) {
        guard let cert = try? DeviceCertificate(bytes: bytes) else { return }
        check(cert.encoded == bytes, "certificate.encoded is not the bytes parsed")
        // Rebuilt from its fields with the shortest lengths, it reads back the same.
        let body = [TLV(tag: 0x42, value: Array(cert.caKeyID.utf8)), TLV(tag: 0x5F20, value: Array(cert.deviceID.utf8)),
                    TLV(tag: 0x86, value: cert.devicePublicKey), TLV(tag: 0x5F25, value: Array(cert.validFrom.compact.utf8)),
                    TLV(tag: 0x5F24, value: Array(cert.validThrough.compact.utf8))].flatMap(\.encoded)
        let rebuilt = TLV(tag: 0x7F21, value: body + TLV(tag: 0x5F37, value: cert.signature).encoded).encoded
        guard let again = try? DeviceCertificate(bytes: rebuilt) else { return check(false, "rebuilt certificate does not parse") }
        check(again.caKeyID == cert.caKeyID && again.deviceID == cert.deviceID && again.devicePublicKey == cert.devicePublicKey
              && again.validFrom == cert.validFrom && again.validThrough == cert.validThrough && again.signature == cert.signature
              && again.signedBytes == body, "rebuilt certificate differs")
        _ = cert.verify(caKeys: [cert.caKeyID: FuzzTargets.authorityKey.publicKey])
        _ = cert.isValid(at: Date(timeIntervalSince1970: 1_800_000_000))
        _ = (cert.notBefore, cert.notAfter)
    }

    // MARK: snapshot install

    /// A fixed key, trusted as the authority of the test snapshots: no fuzzed file can carry
    /// a valid signature, so every install is refused and the store never changes.
    static let authorityKey = try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 0x5A, count: 32))
    static let baseSnapshotID = "330782-20261101-01"
    static let now = Date(timeIntervalSince1970: 1_795_000_000)   // 2026-11-18; fixtures go to 2026-11-22

    /// A scratch store holding a base snapshot (so deltas naming it reach their records),
    /// and the file each input is written to.
    static let scratch: (store: KioskStore, file: URL) = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bk-fuzz-\(getpid())-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        atexit { if let d = FuzzTargets.scratchDirectory { try? FileManager.default.removeItem(atPath: d) } }
        FuzzTargets.scratchDirectory = dir.path
        let store = try! KioskStore(path: dir.appendingPathComponent("kiosk.sqlite").path)
        let base = dir.appendingPathComponent("base.jsonl")
        let w = try! SnapshotWriter(url: base, header: [
            "format": "benefit-snapshot", "format_version": 2, "snapshot_id": baseSnapshotID, "kind": "full",
            "base_snapshot_id": NSNull(), "region": "330782", "issued_at": "2026-11-01T02:00:00Z",
            "expires_at": "2027-01-31T00:00:00Z", "settled_through": "2026-11-01T01:59:00Z", "authority_key_id": "330782-auth-test",
        ], authorityKey: authorityKey)
        try! w.add(["type": "program", "code": "HM-SUBSIDY", "card_type": "medical", "name": "贴补", "limit_fen": 60000,
                    "rate_percent": 100, "period": "calendar_year", "categories": ["01"], "priority": 1])
        try! w.add(["type": "person", "person_ref": String(repeating: "ab", count: 16), "status": "active", "programs": ["HM-SUBSIDY"]])
        try! w.finish()
        _ = try! store.installSnapshot(at: base, trustedAuthorities: ["330782-auth-test": authorityKey.publicKey],
                                       now: now)
        return (store, dir.appendingPathComponent("input.jsonl"))
    }()
    // nonisolated(unsafe), and why it is safe: written once, by the lazy `scratch` initialiser
    // (which Swift runs once, on the fuzzing thread), and read only by the atexit handler
    // at process exit, after fuzzing has stopped.
    nonisolated(unsafe) static var scratchDirectory: String?

    static func snapshot(_ bytes: [UInt8]) {
        let (store, file) = scratch
        try! Data(bytes).write(to: file)
        do {
            _ = try store.installSnapshot(at: file, trustedAuthorities: ["330782-auth-test": authorityKey.publicKey], now: now)
            check(false, "a fuzzed snapshot was installed")
        } catch let r as SnapshotRefusal {
            // The file is always readable and the store healthy: a refusal says what is wrong with the file.
            check(r.code != "storage_error" && r.code != "unreadable_file", "refused as \(r.code): \(r)")
            let text = r.description
            check(!text.contains("\n") && !text.contains("\r"), "refusal is not one line: \(text)")
        } catch {
            check(false, "installSnapshot threw \(type(of: error)), not a SnapshotRefusal")
        }
        // The base snapshot is still the installed one.
        let installed = try? store.installedSnapshot()
        check(installed?.header.snapshotID == baseSnapshotID, "the installed snapshot changed")
    }

    // MARK: hub batch

    static let deviceID = "KSK-TEST-0001"

    static func batch(_ bytes: [UInt8]) {
        BatchProbe.run(bytes, deviceID: deviceID, now: FuzzTargets.now) { condition, why in check(condition, why()) }
    }

    // MARK: bill API body

    static func bill(_ bytes: [UInt8]) {
        guard let b = try? BillRequest.parse(bytes) else { return }
        check(bytes.count <= BillRequest.maximumBodyBytes, "a body over the limit parsed")
        // Written back as JSON, it parses to the same bill (the patient's identity number is
        // kept only as a digest of this process, so it cannot be written back: left out).
        let json = try! JSONSerialization.data(withJSONObject: ["bill_reference": b.billReference, "bill_fen": b.billFen])
        let again = try? BillRequest.parse([UInt8](json))
        check(again?.billReference == b.billReference && again?.billFen == b.billFen && again?.patient == nil,
              "BillRequest does not survive a JSON round trip")
        check(b.patient == nil || b.patient?.count == 32, "a patient digest of the wrong size")
    }

    // MARK: ESC/POS

    static func escpos(_ bytes: [UInt8]) {
        guard let doc = try? ESCPOSDecoder.decode(bytes) else { return }
        // Each printed line, encoded in GB18030 again, reads back as the same text; each
        // raster, written again with `GS v 0`, reads back as the same bitmap.
        var again: [UInt8] = [0x1B, 0x40, 0x1C, 0x26]
        for line in doc.lines {
            guard let data = line.text.data(using: ESCPOS.gb18030) else { return check(false, "decoded line \(line.text.debugDescription) cannot be encoded again") }
            again += Array(data) + [0x0A]
        }
        for r in doc.rasters { again += ESCPOS.rasterCommand(r) }
        guard let redone = try? ESCPOSDecoder.decode(again) else { return check(false, "re-encoded document does not decode") }
        check(redone.textLines == doc.textLines, "text lines differ after a round trip: \(doc.textLines) vs \(redone.textLines)")
        check(redone.rasters == doc.rasters, "rasters differ after a round trip")
    }
}

/// libFuzzer calls this for every input (FUZZING builds); the replayer calls the target directly.
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    FuzzTargets.selected?.run(bytes)
    return 0
}
