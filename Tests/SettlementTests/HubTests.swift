import AsyncHTTPClient
@preconcurrency import Crypto
import Foundation
import KioskStore
@testable import Settlement
import SettlementHub
import Testing

@Suite("Reference hub")
struct HubTests {
    static func signed(_ body: [UInt8], _ deviceID: String = Fixtures.deviceID) throws -> String {
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: Fixtures.seed(deviceID))
        return try key.signature(for: body).base64EncodedString()
    }

    static func batch(_ records: [String], deviceID: String = Fixtures.deviceID, batchID: String = UUID().uuidString.lowercased()) -> [UInt8] {
        BatchBody(batchID: batchID, deviceID: deviceID, sentAt: "2026-11-22T03:00:00Z",
                  records: records.enumerated().map { ("r\($0.offset)", $0.element) }).bytes
    }

    static func alert(_ seq: Int, deviceID: String = Fixtures.deviceID, detail: String = "x") -> String {
        #"{"code":"printer_fault","created_at":"2026-11-22T03:00:00Z","detail":"\#(detail)","kind":"alert","record_id":"\#(deviceID)-\#(seq)","seq":\#(seq),"snapshot_id":null}"#
    }

    @Test("the vector batch: our body builder makes its exact bytes and signature; the hub verifies and stores it")
    func vectorBatch() async throws {
        let v = Fixtures.vectors
        let body = Array((v["batch_body"] as! String).utf8)
        let signature = v["batch_x_signature"] as! String

        // Rebuild the body from its parts with the uploader's builder: byte for byte.
        let parsed = try JSONSerialization.jsonObject(with: Data(body)) as! [String: Any]
        let recordsStart = body.firstRange(of: Array(#""records":["#.utf8))!.upperBound
        let recordText = String(decoding: body[recordsStart..<(body.count - 2)], as: UTF8.self)
        let rebuilt = BatchBody(batchID: parsed["batch_id"] as! String, deviceID: parsed["device_id"] as! String,
                                sentAt: parsed["sent_at"] as! String, records: [("KSK-TEST-0001-1", recordText)])
        #expect(rebuilt.bytes == body)
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: Fixtures.seed(Fixtures.deviceID))
        #expect(key.publicKey.rawRepresentation.base64EncodedString() == Fixtures.publicKey(Fixtures.deviceID))
        let mine = try rebuilt.signature(with: key)
        #expect(key.publicKey.isValidSignature(Data(base64Encoded: signature)!, for: body))
        #expect(mine == signature, "Ed25519 (RFC 8032) is deterministic")

        try await withHub { hub in
            let url = "\(hub.url)/v1/devices/KSK-TEST-0001/batches"
            let (status, answer, _) = try await post(url, body, signature: signature)
            #expect(status == 200)
            let results = answer?["results"] as? [[String: Any]]
            #expect(results?.count == 1)
            #expect(results?.first?["record_id"] as? String == "KSK-TEST-0001-1")
            #expect(results?.first?["status"] as? String == "accepted")
            let stored = try #require(try hub.hub.database.record("KSK-TEST-0001-1"))
            #expect(stored.body == recordText, "the record's exact JSON is kept")
            #expect(stored.sha256 == SHA256.hash(data: Array(recordText.utf8)).map { String(format: "%02x", $0) }.joined())

            // One flipped byte: the signature fails → 401, nothing stored.
            var tampered = body
            tampered[tampered.count - 5] ^= 0x01
            let (s2, a2, _) = try await post(url, tampered, signature: signature)
            #expect(s2 == 401)
            #expect(a2?["error"] as? String == "bad_signature")
            #expect(try await post(url, body, signature: nil).0 == 401)
            // The same body under another device's path: that key does not verify it.
            #expect(try await post("\(hub.url)/v1/devices/KSK-TEST-0002/batches", body, signature: signature).0 == 401)
            // Unknown and retired devices: 403.
            #expect(try await post("\(hub.url)/v1/devices/KSK-NOBODY/batches", body, signature: signature).0 == 403)
            #expect(try await post("\(hub.url)/v1/devices/KSK-TEST-0003/batches", body, signature: signature).0 == 403)
            #expect(try hub.hub.database.recordCount() == 1)
        }
    }

    @Test("per-record answers: accepted, duplicate with the original time, conflict, and the other reasons")
    func perRecordAnswers() async throws {
        try await withHub { hub in
            let url = "\(hub.url)/v1/devices/KSK-TEST-0001/batches"
            let first = Self.batch([Self.alert(1), Self.alert(2)])
            #expect(try await post(url, first, signature: Self.signed(first)).0 == 200)
            let firstTime = try #require(try hub.hub.database.record("KSK-TEST-0001-1")).receivedAt

            hub.clock.now = testEpoch.addingTimeInterval(3600)
            let records = [
                Self.alert(1),                                                        // duplicate
                Self.alert(2, detail: "changed"),                                     // conflict
                Self.alert(3),                                                        // accepted
                Self.alert(4).replacingOccurrences(of: #""kind":"alert""#, with: #""kind":"lottery""#),
                Self.alert(5, deviceID: "KSK-TEST-0002"),                             // another device's record
                Self.alert(6).replacingOccurrences(of: #""detail":"x","#, with: ""),  // missing detail
                Self.alert(7).replacingOccurrences(of: #""seq":7"#, with: #""seq":8"#),
                #"{"record_id":"KSK-TEST-0001-9","seq":9}"#,
                #"[1,2]"#,
                Self.alert(10).replacingOccurrences(of: "2026-11-22T03:00:00Z", with: "last tuesday"),
                Self.alert(3),                                                        // repeated in the same batch
            ]
            let body = Self.batch(records)
            let (status, answer, text) = try await post(url, body, signature: Self.signed(body))
            #expect(status == 200, "\(text)")
            let results = try #require(answer?["results"] as? [[String: Any]])
            #expect(results.count == records.count)
            func r(_ i: Int) -> (String?, String?, String?, String?) {
                (results[i]["record_id"] as? String, results[i]["status"] as? String, results[i]["reason"] as? String, results[i]["received_at"] as? String)
        }
        #expect(r(0).1 == "duplicate" && r(0).3 == firstTime)
        #expect(r(1).1 == "rejected" && r(1).2 == "conflict")
        #expect(r(2).1 == "accepted" && r(2).3 == "2026-11-22T04:00:00Z")
        #expect(r(3).2 == "unknown_kind")
        #expect(r(4).2 == "device_mismatch")
        #expect(r(5).2 == "missing_fields")
        #expect(r(6).2 == "bad_record_id")
        #expect(r(7).2 == "missing_fields")
        #expect(r(8).0 == nil && r(8).2 == "malformed_record")
        #expect(r(9).2 == "bad_created_at")
        #expect(r(10).1 == "duplicate" && r(10).3 == "2026-11-22T04:00:00Z")
        #expect(results.map { $0["record_id"] as? String }.prefix(8) == ["KSK-TEST-0001-1", "KSK-TEST-0001-2", "KSK-TEST-0001-3",
                                                                         "KSK-TEST-0001-4", "KSK-TEST-0002-5", "KSK-TEST-0001-6",
                                                                         "KSK-TEST-0001-7", "KSK-TEST-0001-9"])
        // Stored once each; the first content of record 2 is kept.
        #expect(try hub.hub.database.recordCount() == 3)
        #expect(try hub.hub.database.record("KSK-TEST-0001-2")?.body == Self.alert(2))
        #expect(try hub.hub.database.rejections().map(\.reason).contains("conflict"))
        }
    }

    @Test("batch-level refusals: malformed JSON 400 with a message, too many records or bytes 413, health")
    func batchRefusals() async throws {
        try await withHub { hub in
            let url = "\(hub.url)/v1/devices/KSK-TEST-0001/batches"
            for bad in [#"{"batch_id":"#, #"[]"#, #"{"batch_id":"b","device_id":"KSK-TEST-0001","sent_at":"2026-11-22T03:00:00Z"}"#,
                        #"{"batch_id":"b","device_id":"KSK-TEST-0002","sent_at":"2026-11-22T03:00:00Z","records":[]}"#,
                        #"{"batch_id":"b","device_id":"KSK-TEST-0001","sent_at":"2026-11-22T03:00:00Z","records":[]} x"#] {
                let body = Array(bad.utf8)
                let (status, answer, _) = try await post(url, body, signature: Self.signed(body))
                #expect(status == 400, "\(bad)")
                #expect((answer?["message"] as? String)?.isEmpty == false)
        }
        let many = Self.batch((1...501).map { Self.alert($0) })
        #expect(try await post(url, many, signature: Self.signed(many)).0 == 413)
        let big = Self.batch((1...300).map { Self.alert($0, detail: String(repeating: "y", count: 3600)) })
        #expect(big.count > 1 << 20)
        #expect(try await post(url, big, signature: Self.signed(big)).0 == 413)
        #expect(try hub.hub.database.recordCount() == 0)
        let empty = Self.batch([])
        let (s, a, _) = try await post(url, empty, signature: Self.signed(empty))
        #expect(s == 200 && (a?["results"] as? [Any])?.isEmpty == true)

        let health = try await HTTPClient.shared.execute(HTTPClientRequest(url: "\(hub.url)/v1/health"), timeout: .seconds(10))
        #expect(health.status.code == 200)
        _ = try await health.body.collect(upTo: 1 << 16)
        }
    }
}

