import Crypto
import KioskProtocol
import Foundation
import HubRules
import HubStore

/// The properties a batch body must keep however it is made, checked from outside the module
/// (the fuzzer, `Fuzz/`): a body the hub reads has its envelope's fields, every record's id
/// carries its seq, its bytes are one JSON object hashed as they are, it is read or refused,
/// and the rules that read a subsidy's fields never trap. `check(condition, why)` is told of
/// each property. Public so that the fuzzer needs no `@testable import` (which a release
/// build refuses); the batch's types stay internal.
public enum BatchProbe {
    /// Reads `bytes` as a batch body for `deviceID` and tells `check` whether each property holds
    /// (with a description of the breach); a body the hub refuses whole checks nothing.
    public static func run(_ bytes: [UInt8], deviceID: String, now: Date, check: (Bool, @autoclosure () -> String) -> Void) {
        guard let b = try? SettlementHub.Batch(bytes, pathDeviceID: deviceID) else { return }
        check(!b.batchID.isEmpty && Timestamp.date(b.sentAt) != nil, "batch envelope accepted without its fields")
        for r in b.records {
            check(r.seq > 0 && r.recordID == "\(deviceID)-\(r.seq)", "record_id \(r.recordID) does not carry seq \(r.seq)")
            check((try? StrictJSON.objectMembers(r.bytes)) != nil, "record bytes are not one JSON object")
            check(r.sha256 == Hex.encode(SHA256.hash(data: r.bytes)), "record hash is not of its bytes")
            check((r.record == nil) != (r.structureRefusal == nil), "a record is neither read nor refused")
            if let s = r.record?.medicalSubsidy {
                _ = RecordRules.amounts(s, bill: [])
                _ = RecordRules.cardAck(s, cardKey: nil)
            }
            _ = RecordRules.timeSuspect(createdAt: r.record?.createdAt ?? "", now: now)
        }
    }
}
