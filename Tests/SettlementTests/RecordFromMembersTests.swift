import Foundation
import KioskProtocol
import TestVectors
import Testing
@testable import HubRules

/// Issue 24 item 5: the hub reads a batch's records from the strict reader's members instead
/// of decoding each one again with `JSONDecoder`. What it takes and refuses must not change:
/// the old path (the structure check, then `SettlementRecord(json:)`) is the oracle, on random
/// records of every kind with members retyped, dropped, nulled or added.
@Suite struct RecordFromMembersTests {
    /// A member's value as JSON text.
    enum Value {
        case string(String), integer(Int64), bool(Bool), null, fraction, array, object

        var json: String {
            switch self {
            case .string(let s): return String(decoding: try! JSONEncoder().encode(s), as: UTF8.self)
            case .integer(let v): return String(v)
            case .bool(let b): return b ? "true" : "false"
            case .null: return "null"
            case .fraction: return "1.5"
            case .array: return "[1,\"a\"]"
            case .object: return "{\"a\":1}"
            }
        }
    }

    static let alphabet: [Character] = Array("aZ09-_ /\\\"\n\t\u{1}价惠民😀\u{2028}é")

    static func text(_ rng: inout SplitMix64) -> String {
        String((0..<rng.below(10)).map { _ in alphabet[rng.below(alphabet.count)] })
    }

    /// A record of a random kind with every member its kind has, some optional ones left out.
    static func members(_ rng: inout SplitMix64) -> [(String, Value)] {
        func t() -> Value { .string(text(&rng)) }
        func i() -> Value { .integer([Int64.min, Int64.max, 0, -1, Int64(rng.below(1_000_000))][rng.below(5)]) }
        let kind = ["medical_subsidy", "subsidy_reversal", "legal_aid_application", "alert"][rng.below(4)]
        var out: [(String, Value)] = [("record_id", .string("KSK-1-7")), ("seq", .integer(7)), ("kind", .string(kind)),
                                      ("created_at", .string("2026-11-22T03:00:00Z")), ("snapshot_id", rng.below(2) == 0 ? .null : t())]
        for (name, type) in RecordRules.kinds[kind] ?? [] {
            switch type {
            case .string: out.append((name, t()))
            case .integer: out.append((name, i()))
            case .boolean: out.append((name, .bool(rng.below(2) == 0)))
            }
        }
        let optional = ["legal_aid_application": ["contact_phone", "card_usage_digest", "card_auth"],
                        "alert": ["card_number", "operator"]][kind] ?? []
        for name in optional where rng.below(3) > 0 { out.append((name, rng.below(4) == 0 ? .null : t())) }
        return out
    }

    /// One change to a record's members: a value of another type, a member dropped, an unknown one added.
    static func mutate(_ m: inout [(String, Value)], _ rng: inout SplitMix64) {
        let others: [Value] = [.string("x"), .integer(3), .bool(true), .null, .fraction, .array, .object]
        switch rng.below(4) {
        case 0: m[rng.below(m.count)].1 = others[rng.below(others.count)]
        case 1: m.remove(at: rng.below(m.count))
        case 2: m.append(([ "card_auth", "operator", "contact_phone", "card_usage_digest", "zzz"][rng.below(5)], others[rng.below(others.count)]))
        default: break
        }
    }

    enum Outcome: Equatable { case taken, refusedByModel, refused }

    /// Reads `bytes` both ways and records an issue where they differ; what the oracle did.
    static func compare(_ bytes: [UInt8]) throws -> Outcome {
        let text = String(decoding: bytes, as: UTF8.self)
        let mine = IncomingRecord(bytes: bytes, sha256: "", recordID: "KSK-1-7", seq: 7).decoded
        // The oracle: the structure check on the same members, then the model by JSONDecoder.
        let oracle: Result<SettlementRecord, Refusal>
        var outcome = Outcome.refused
        if let members = RecordMembers(bytes) {
            if let refusal = RecordRules.structure(members, recordID: "KSK-1-7", seq: 7) {
                oracle = .failure(refusal)
            } else if let r = try? SettlementRecord(json: bytes) {
                oracle = .success(r)
                outcome = .taken
            } else {
                oracle = .failure(Refusal("bad_fields"))
                outcome = .refusedByModel
            }
        } else {
            oracle = .failure(Refusal("bad_fields"))
        }
        switch (mine, oracle) {
        case (.success(let a), .success(let b)):
            // Byte for byte: String's == would take canonically equivalent texts as equal.
            #expect(try a.json() == b.json(), "\(text)")
        case (.failure(let a), .failure(let b)):
            #expect(a.reason == b.reason, "\(text): \(a) against \(b)")
        default:
            Issue.record("\(text): \(mine) against \(oracle)")
        }
        return outcome
    }

    @Test("20,000 random records, a third of them changed: the same record or the same refusal as the structure check and JSONDecoder")
    func membersReadAsJSONDecoderDid() throws {
        var rng = SplitMix64(seed: 24_005)
        var taken = 0, refusedByModel = 0
        for n in 0..<20_000 {
            var m = Self.members(&rng)
            if n % 3 == 0 { Self.mutate(&m, &rng) }
            m.shuffle(using: &rng)
            switch try Self.compare(Array(("{" + m.map { "\"\($0.0)\":\($0.1.json)" }.joined(separator: ",") + "}").utf8)) {
            case .taken: taken += 1
            case .refusedByModel: refusedByModel += 1
            case .refused: break
            }
        }
        // The cases are all there: records taken, and ones only the model refuses.
        #expect(taken > 10_000 && refusedByModel > 50, "taken \(taken), refused by the model alone \(refusedByModel)")
    }

    @Test("escapes the generator does not make: surrogate pairs, a lone surrogate, an escaped key, -0, a decomposed accent")
    func escapesReadAsJSONDecoderDid() throws {
        let head = #""record_id":"KSK-1-7","seq":7,"created_at":"2026-11-22T03:00:00Z","snapshot_id":null"#
        let alert = head + #","kind":"alert","code":"printer_fault","detail":"#
        let legal = head + #","kind":"legal_aid_application","card_number":"3307820000000017","person_ref":"ab","program":"LA","matter":"m","priority":true"#
        let cases: [(String, Outcome)] = [
            ("{" + alert + #""\ud83d\ude00 \u4ef7 e\u0301"}"#, .taken),
            ("{" + alert + #""x","operator":"\ud800"}"#, .refusedByModel),
            ("{" + alert + #""x","\u006fperator":"OP-1"}"#, .taken),
            ("{" + alert + #""x","operator":["OP-1"]}"#, .refusedByModel),
            ("{" + legal + #","card\u005fauth":"abc"}"#, .taken),
            ("{" + legal + #","card_auth":1.5}"#, .refusedByModel),
            ("{" + head + #","kind":"subsidy_reversal","reverses":"KSK-1-6","amount_fen":-0,"reason":"r","operator":"o"}"#, .taken),
        ]
        for (text, expected) in cases {
            #expect(try Self.compare(Array(text.utf8)) == expected, "\(text)")
        }
    }
}
