import Crypto
import KioskProtocol
import Foundation
import Testing
@testable import Receipts

@Suite struct JWSTests {
    /// The payload part of a JWS, decoded.
    func payloadText(_ jws: String) throws -> String {
        let parts = jws.split(separator: ".", omittingEmptySubsequences: false)
        try #require(parts.count == 3)
        return String(decoding: try #require(Base64URL.decode(parts[1])), as: UTF8.self)
    }

    /// A content built from the vector's payload (its figures, not copies of them here); the card number is the
    /// batch record's, since the payload holds it masked only.
    func subsidyContent(from payload: [String: Any]) throws -> ReceiptContent {
        let text = try #require(try Fixtures.batchRecords("batch_body").first)
        let record = try #require(try SettlementRecord(json: text).medicalSubsidy)
        return .subsidy(seq: try Fixtures.int64(payload, "r"), institution: "330782-H01", deviceID: "KSK-TEST-0001",
                        time: Date(timeIntervalSince1970: TimeInterval(try Fixtures.int64(payload, "t"))),
                        cardNumber: record.cardNumber, holderName: "王秀英",
                        billFen: try Fixtures.int64(payload, "b"), subsidyFen: try Fixtures.int64(payload, "s"),
                        patientPaysFen: try Fixtures.int64(payload, "p"), allowanceLeftFen: try Fixtures.int64(payload, "l"))
    }

    /// receipt-and-batch.json: Ed25519 is deterministic, so the same payload and key give the vector exactly.
    @Test func signingReproducesTheSubsidyVector() throws {
        let expected = try Fixtures.receiptJWS()
        let content = try subsidyContent(from: try Fixtures.payload("receipt_payload"))
        #expect(ReceiptJWS.header(kid: "KSK-TEST-0001") == #"{"alg":"EdDSA","kid":"KSK-TEST-0001"}"#)
        #expect(ReceiptJWS.payload(for: content) == (try payloadText(expected)))
        let jws = try ReceiptJWS.sign(content: content, key: try Fixtures.privateKey("KSK-TEST-0001"))
        #expect(jws == expected)
        #expect(jws.utf8.count == (try Fixtures.integer("receipt_jws_bytes")))
        // The shared fixture is the same receipt.
        #expect(try ReceiptJWS.sign(content: vectorSubsidy, key: try Fixtures.privateKey("KSK-TEST-0001")) == expected)
    }

    @Test func signingReproducesTheReversalVector() throws {
        let expected = try Fixtures.reversalJWS()
        let payload = try Fixtures.payload("reversal_receipt_payload")
        let content = ReceiptContent.reversal(
            seq: try Fixtures.int64(payload, "r"), institution: "330782-H01", deviceID: "KSK-TEST-0001",
            time: Date(timeIntervalSince1970: TimeInterval(try Fixtures.int64(payload, "t"))), cardNumber: "3307820000000017",
            holderName: "王秀英", reversedSeq: try Fixtures.int64(payload, "v"), amountFen: try Fixtures.int64(payload, "s"), reason: "x")
        #expect(ReceiptJWS.payload(for: content) == (try payloadText(expected)))
        let jws = try ReceiptJWS.sign(content: content, key: try Fixtures.privateKey("KSK-TEST-0001"))
        #expect(jws == expected)
        #expect(jws.utf8.count == (try Fixtures.integer("reversal_receipt_jws_bytes")))
        #expect(try ReceiptJWS.sign(content: vectorReversal, key: try Fixtures.privateKey("KSK-TEST-0001")) == expected)
    }

    /// From the settlement records of the vectors' batches (upload.md §1) to the vectors' receipts: `l` from the
    /// record's used_after_fen and the snapshot's limit, `v` from `reverses`, the card number from the reversed record.
    @Test func receiptsFromTheVectorRecordsAreTheVectors() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let subsidy = try SettlementRecord(json: try #require(try Fixtures.batchRecords("batch_body").first))
        let subsidyFields = try #require(subsidy.medicalSubsidy)
        let left = RecordReceipt.allowanceLeft(record: subsidyFields, limitFen: try Fixtures.limitFen(subsidyFields.program))
        let ms = try RecordReceipt.content(record: subsidy, deviceID: "KSK-TEST-0001", institution: "elsewhere", holderName: "王秀英",
                                           allowanceLeftFen: left)
        #expect(ms.institution == "330782-H01" && ms.recordID == subsidy.recordID)
        #expect(try ReceiptJWS.sign(content: ms, key: key) == (try Fixtures.receiptJWS()))

        let reversal = try SettlementRecord(json: try #require(try Fixtures.batchRecords("reversal_batch_body").first))
        let rv = try RecordReceipt.content(record: reversal, deviceID: "KSK-TEST-0001", institution: "330782-H01", holderName: "王**",
                                           reversed: subsidy)
        #expect(rv.reversedRecordID == reversal.subsidyReversal?.reverses)
        #expect(try ReceiptJWS.sign(content: rv, key: key) == (try Fixtures.reversalJWS()))
        #expect(ReceiptLayout.lines(for: rv).contains("原流水号：KSK-TEST-0001-1"))

        // Without what it needs, no receipt rather than a wrong one.
        #expect(throws: RecordReceiptError.allowanceUnknown(program: "HM-SUBSIDY")) {
            try RecordReceipt.content(record: subsidy, deviceID: "KSK-TEST-0001", institution: "", holderName: "")
        }
        #expect(throws: RecordReceiptError.reversedRecordMissing("KSK-TEST-0001-1")) {
            try RecordReceipt.content(record: reversal, deviceID: "KSK-TEST-0001", institution: "", holderName: "")
        }
        #expect(throws: RecordReceiptError.otherDevice(recordID: "KSK-TEST-0001-1", deviceID: "KSK-TEST-0002")) {
            try RecordReceipt.content(record: subsidy, deviceID: "KSK-TEST-0002", institution: "", holderName: "", allowanceLeftFen: 0)
        }
        #expect(throws: RecordReceiptError.self) {
            try RecordReceipt.content(record: reversal, deviceID: "KSK-TEST-0001", institution: "", holderName: "", reversed: reversal)
        }
    }

    /// A bill shared by two programs: one receipt per record, `s` and `l` that program's, `b` and `p` the whole bill's.
    @Test func aSharedBillPrintsOneReceiptPerRecord() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let records = try Fixtures.batchRecords("two_program_batch_body").map { try SettlementRecord(json: $0) }
        try #require(records.count == 2)
        var seen: Set<Int64> = []
        for record in records {
            let m = try #require(record.medicalSubsidy)
            let program = m.program
            let limit = try Fixtures.limitFen(program)
            let left = RecordReceipt.allowanceLeft(record: m, limitFen: limit)
            #expect(left == limit - m.usedAfterFen)
            let content = try RecordReceipt.content(record: record, deviceID: "KSK-TEST-0001", institution: "", holderName: "张三",
                                                    allowanceLeftFen: left)
            let v = try ReceiptJWS.verify(try ReceiptJWS.sign(content: content, key: key), keys: ["KSK-TEST-0001": key.publicKey])
            #expect(v.seq == record.seq && v.recordID == record.recordID)
            #expect(v.billFen == m.billFen && v.patientPaysFen == m.patientPaysFen)
            #expect(v.subsidyFen == m.subsidyFen && v.allowanceLeftFen == left)
            #expect(ReceiptLayout.lines(for: content).contains("贴补项目：" + program))
            seen.insert(v.seq)
        }
        #expect(seen.count == 2)
        // The README's figures: HM-SUBSIDY used up (60000 of 60000), HM-CS-OUTPATIENT 30000 of 45000 left.
        let lefts = try records.map { r in
            let m = try #require(r.medicalSubsidy)
            return RecordReceipt.allowanceLeft(record: m, limitFen: try Fixtures.limitFen(m.program))
        }
        #expect(lefts == [0, 30000])
    }

    @Test func verifyReadsTheVectors() throws {
        let keys = ["KSK-TEST-0001": try Fixtures.publicKey("KSK-TEST-0001")]
        let p = try Fixtures.payload("receipt_payload")
        let r = try ReceiptJWS.verify(try Fixtures.receiptJWS(), keys: keys)
        #expect(r == VerifiedReceipt(deviceID: "KSK-TEST-0001", seq: try Fixtures.int64(p, "r"), kind: .subsidy,
                                     maskedCardNumber: try #require(p["c"] as? String), unixTime: try Fixtures.int64(p, "t"),
                                     billFen: try Fixtures.int64(p, "b"), subsidyFen: try Fixtures.int64(p, "s"),
                                     patientPaysFen: try Fixtures.int64(p, "p"), allowanceLeftFen: try Fixtures.int64(p, "l")))
        #expect(r.recordID == "KSK-TEST-0001-1" && r.time == vectorTime && r.reversedRecordID == nil && r.amountFen == nil)

        let q = try Fixtures.payload("reversal_receipt_payload")
        let v = try ReceiptJWS.verify(try Fixtures.reversalJWS(), keys: keys)
        #expect(v == VerifiedReceipt(deviceID: "KSK-TEST-0001", seq: try Fixtures.int64(q, "r"), kind: .reversal,
                                     maskedCardNumber: try #require(q["c"] as? String), unixTime: try Fixtures.int64(q, "t"),
                                     subsidyFen: try Fixtures.int64(q, "s"), reversedSeq: try Fixtures.int64(q, "v")))
        #expect(v.recordID == "KSK-TEST-0001-2" && v.reversedRecordID == "KSK-TEST-0001-1" && v.amountFen == 10000)
    }

    /// receipt.md §1's worst cases come to exactly the vectors' sizes, under 300 bytes, and verify.
    @Test func worstCasesHaveTheVectorsSizes() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        for content in worstCases {
            let jws = try ReceiptJWS.sign(content: content, key: key)
            #expect(jws.utf8.count == (try Fixtures.worstCaseBytes(content.kind)), "\(content.kind)")
            #expect(jws.utf8.count < ReceiptJWS.maximumBytes)
            let v = try ReceiptJWS.verify(jws, keys: [content.deviceID: key.publicKey])
            #expect(v.kind == content.kind && v.seq == 99_999_999 && v.maskedCardNumber == "6217********1234")
        }
    }

    /// Nothing beyond receipt.md's bounds is signed, so no receipt can outgrow its QR.
    @Test func contentOutOfBoundsIsNotSigned() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        var refused: [ReceiptContent] = []
        func with(_ base: ReceiptContent, _ change: (inout ReceiptContent) -> Void) { var c = base; change(&c); refused.append(c) }
        with(vectorSubsidy) { $0.deviceID = String(repeating: "D", count: 21) }
        with(vectorSubsidy) { $0.deviceID = "ksk-test-0001" }
        with(vectorSubsidy) { $0.deviceID = "" }
        with(vectorSubsidy) { $0.seq = 100_000_000 }
        with(vectorSubsidy) { $0.seq = 0 }
        with(vectorSubsidy) { $0.cardNumber = "6217002430012345678" }
        with(vectorSubsidy) { $0.time = Date(timeIntervalSince1970: 10_000_000_000) }
        with(vectorSubsidy) { $0.body = .subsidy(SubsidyAmounts(billFen: 100_000_000, subsidyFen: 1, patientPaysFen: 0, allowanceLeftFen: 0)) }
        with(vectorSubsidy) { $0.body = .subsidy(SubsidyAmounts(billFen: 100, subsidyFen: 101, patientPaysFen: 0, allowanceLeftFen: 0)) }
        with(vectorSubsidy) { $0.body = .subsidy(SubsidyAmounts(billFen: 100, subsidyFen: 60, patientPaysFen: 41, allowanceLeftFen: 0)) }
        with(vectorSubsidy) { $0.body = .subsidy(SubsidyAmounts(billFen: 100, subsidyFen: 0, patientPaysFen: 100, allowanceLeftFen: 0)) }
        with(vectorSubsidy) { $0.body = .subsidy(SubsidyAmounts(billFen: 100, subsidyFen: 100, patientPaysFen: 0, allowanceLeftFen: -1)) }
        with(vectorSubsidy) { $0.body = .subsidy(SubsidyAmounts(billFen: 100, subsidyFen: 100, patientPaysFen: 0, allowanceLeftFen: 100_000_001)) }
        with(vectorReversal) { $0.body = .reversal(ReversalDetails(reversedSeq: 2, amountFen: 100, reason: "")) }   // not earlier
        with(vectorReversal) { $0.body = .reversal(ReversalDetails(reversedSeq: 0, amountFen: 100, reason: "")) }
        with(vectorReversal) { $0.body = .reversal(ReversalDetails(reversedSeq: 1, amountFen: 0, reason: "")) }
        with(vectorLegalAid) { $0.body = .legalAid(LegalAidMatter(code: String(repeating: "z", count: 33), name: "")) }
        with(vectorLegalAid) { $0.body = .legalAid(LegalAidMatter(code: "Labor", name: "")) }
        for content in refused {
            do {
                let jws = try ReceiptJWS.sign(content: content, key: key)
                Issue.record("signed \(content): \(jws)")
            } catch let e as ReceiptJWSError {
                guard case .invalidContent = e else { Issue.record("\(content): \(e)"); continue }
            }
        }
        // The edges themselves are signed.
        var edge = vectorSubsidy
        edge.body = .subsidy(SubsidyAmounts(billFen: 100, subsidyFen: 60, patientPaysFen: 40, allowanceLeftFen: 0))
        #expect(try ReceiptJWS.verify(try ReceiptJWS.sign(content: edge, key: key), keys: ["KSK-TEST-0001": key.publicKey]).patientPaysFen == 40)
    }

    @Test func verifyRejectsATamperedPayload() throws {
        let keys = ["KSK-TEST-0001": try Fixtures.publicKey("KSK-TEST-0001")]
        for jws in [try Fixtures.receiptJWS(), try Fixtures.reversalJWS()] {
            let parts = jws.split(separator: ".").map(String.init)
            let text = try payloadText(jws)
            // Each figure changed in turn (an extra digit 9 at its front), the signature kept.
            for key in ["r", "t", "b", "s", "p", "l", "v"] {
                guard let range = text.range(of: "\"\(key)\":") else { continue }
                let forged = text.replacingCharacters(in: range, with: "\"\(key)\":9")
                #expect(throws: ReceiptJWSError.badSignature) {
                    try ReceiptJWS.verify([parts[0], Base64URL.encode(Array(forged.utf8)), parts[2]].joined(separator: "."), keys: keys)
                }
            }
            // One bit of the signature flipped.
            var signature = try #require(Base64URL.decode(parts[2]))
            signature[10] ^= 1
            #expect(throws: ReceiptJWSError.badSignature) {
                try ReceiptJWS.verify([parts[0], parts[1], Base64URL.encode(signature)].joined(separator: "."), keys: keys)
            }
            // Another device's kid over the same signature.
            let other = Base64URL.encode(Array(ReceiptJWS.header(kid: "KSK-TEST-0002").utf8))
            #expect(throws: ReceiptJWSError.badSignature) {
                try ReceiptJWS.verify([other, parts[1], parts[2]].joined(separator: "."),
                                      keys: ["KSK-TEST-0002": try Fixtures.publicKey("KSK-TEST-0001")])
            }
        }
    }

    @Test func verifyRejectsAWrongKeyAndAnUnknownKid() throws {
        let jws = try Fixtures.receiptJWS()
        #expect(throws: ReceiptJWSError.badSignature) {
            try ReceiptJWS.verify(jws, keys: ["KSK-TEST-0001": try Fixtures.publicKey("KSK-TEST-0002")])
        }
        #expect(throws: ReceiptJWSError.unknownKeyID("KSK-TEST-0001")) {
            try ReceiptJWS.verify(jws, keys: ["KSK-TEST-0002": try Fixtures.publicKey("KSK-TEST-0002")])
        }
    }

    @Test func verifyRejectsOtherAlgorithmsAndMalformedInput() throws {
        let keys = ["KSK-TEST-0001": try Fixtures.publicKey("KSK-TEST-0001")]
        let parts = try Fixtures.receiptJWS().split(separator: ".").map(String.init)
        let hs256 = Base64URL.encode(Array(#"{"alg":"HS256","kid":"KSK-TEST-0001"}"#.utf8))
        #expect(throws: ReceiptJWSError.wrongAlgorithm("HS256")) { try ReceiptJWS.verify([hs256, parts[1], parts[2]].joined(separator: "."), keys: keys) }
        let none = Base64URL.encode(Array(#"{"alg":"none","kid":"KSK-TEST-0001"}"#.utf8))
        #expect(throws: ReceiptJWSError.wrongAlgorithm("none")) { try ReceiptJWS.verify([none, parts[1], ""].joined(separator: "."), keys: keys) }
        for bad in ["", "a.b", "a.b.c.d", parts[0] + "=." + parts[1] + "." + parts[2], parts[0] + "." + parts[1] + ".AAAA",
                    Base64URL.encode(Array("[]".utf8)) + "." + parts[1] + "." + parts[2],
                    String(repeating: "A", count: 300)] {
            expectMalformed(bad, keys: keys)
        }
    }

    /// Signed with the device's own key, so the signature checks: the payload's form is what is refused.
    @Test func verifyChecksThePayloadsForm() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let keys = ["KSK-TEST-0001": key.publicKey]
        let good = #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000}"#
        #expect(try ReceiptJWS.verify(try signRaw(payload: good, key: key), keys: keys) == ReceiptJWS.verify(try Fixtures.receiptJWS(), keys: keys))
        // JSON whitespace and key order are not the form; the keys, types and bounds are.
        let spaced = #"{ "k":"ms", "r":1,"c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000 }"#
        #expect(try ReceiptJWS.verify(try signRaw(payload: spaced, key: key), keys: keys).seq == 1)
        let malformed = [
            #"{"r":"KSK-TEST-0001-1","k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000}"#,   // version 1
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"l":30000}"#,           // no p
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0}"#,               // no l
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000,"m":"x"}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000,"l":1}"#, // duplicate
            #"{"r":1.0,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":1e4,"s":10000,"p":0,"l":30000}"#,
            #"{"r":01,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":"1795316400","b":10000,"s":10000,"p":0,"l":30000}"#,
            #"{"r":1,"k":"ms","c":"3307820000000017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000}"#,   // unmasked
            #"{"r":1,"k":"ms","c":"3307********0017","t":-1,"b":10000,"s":10000,"p":0,"l":30000}"#,
            #"{"r":100000000,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":1,"l":30000}"#,     // s + p > b
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10001,"p":0,"l":30000}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":100000001}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":-1}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":true}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":[1]}"#,
            #"{"r":1,"k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000,"p":0,"l":30000} x"#,
            #"{"r":2,"k":"rv","c":"3307********0017","t":1795317000,"v":2,"s":10000}"#,                          // v not earlier
            #"{"r":2,"k":"rv","c":"3307********0017","t":1795317000,"v":"KSK-TEST-0001-1","s":10000}"#,
            #"{"r":2,"k":"rv","c":"3307********0017","t":1795317000,"s":10000}"#,
            #"{"r":2,"k":"rv","c":"3307********0017","t":1795317000,"v":1,"s":0}"#,
            #"{"r":3,"k":"la","c":"3307********0025","t":1795316400,"m":"Labor"}"#,
            #"{"r":3,"k":"la","c":"3307********0025","t":1795316400}"#,
            #"{"r":3,"k":"xx","c":"3307********0025","t":1795316400,"m":"labor"}"#,
            #"{"r":3,"c":"3307********0025","t":1795316400,"m":"labor"}"#,
            #"[1]"#,
        ]
        for payload in malformed { expectMalformed(try signRaw(payload: payload, key: key), keys: keys) }
        // Headers other than exactly {"alg":"EdDSA","kid":<device id>}.
        for header in [#"{"alg":"EdDSA","kid":"KSK-TEST-0001","crit":["x"]}"#, #"{"alg":"EdDSA","kid":"KSK-TEST-0001","typ":"JWT"}"#,
                       #"{"alg":"EdDSA"}"#, #"{"alg":"EdDSA","kid":1}"#] {
            expectMalformed(try signRaw(header: header, payload: good, key: key), keys: keys)
        }
        let lower = ["ksk-test-0001": key.publicKey]
        expectMalformed(try signRaw(header: #"{"alg":"EdDSA","kid":"ksk-test-0001"}"#, payload: good, key: key), keys: lower)
    }

    func expectMalformed(_ jws: String, keys: [String: Curve25519.Signing.PublicKey], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let r = try ReceiptJWS.verify(jws, keys: keys)
            Issue.record("accepted \(jws): \(r)", sourceLocation: sourceLocation)
        } catch let e as ReceiptJWSError {
            guard case .malformed = e else { Issue.record("\(jws): \(e)", sourceLocation: sourceLocation); return }
        } catch {
            Issue.record("\(jws): \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func jsonStringsAreEscapedAndReadBack() throws {
        #expect(JSONText.asciiString("a\"b\\c\n\u{1}é😀") == #""a\"b\\c\n\u0001\u00e9\ud83d\ude00""#)
        for text in ["a\"b\\c\n\u{1}é😀", "", "收费处撤销账单", "/\u{7F}"] {
            let object = "{" + JSONText.asciiString("k") + ":" + JSONText.asciiString(text) + "}"
            #expect(StrictJSON.flatObject(Array(object.utf8)) == ["k": .string(text)])
        }
        #expect(StrictJSON.flatObject(Array(#"{"k":"\ud83d"}"#.utf8)) == nil)      // a lone surrogate
        #expect(StrictJSON.flatObject(Array(#"{"k":"\u+041"}"#.utf8)) == nil)
        #expect(StrictJSON.flatObject(Array(#"{"a":true,"b":null,"c":-5}"#.utf8)) == ["a": .bool(true), "b": .null, "c": .integer(-5)])
    }

    @Test func recordIDsOfADevice() {
        #expect(RecordReceipt.seq(of: "KSK-TEST-0001-17", deviceID: "KSK-TEST-0001") == 17)
        #expect(RecordReceipt.seq(of: "KSK-TEST-0001-17", deviceID: "KSK-TEST-000") == nil)
        #expect(RecordReceipt.seq(of: "KSK-TEST-0002-17", deviceID: "KSK-TEST-0001") == nil)
        #expect(RecordReceipt.seq(of: "KSK-TEST-0001-017", deviceID: "KSK-TEST-0001") == nil)
        #expect(RecordReceipt.seq(of: "KSK-TEST-0001-", deviceID: "KSK-TEST-0001") == nil)
        #expect(RecordReceipt.seq(of: "KSK-TEST-0001-1x", deviceID: "KSK-TEST-0001") == nil)
    }

    @Test func base64url() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 251) }
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(text == Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: ""))
            #expect(Base64URL.decode(text) == bytes)
        }
        #expect(Base64URL.decode("AB") == nil)      // leftover bits set: not canonical
        #expect(Base64URL.decode("A") == nil && Base64URL.decode("AA==") == nil && Base64URL.decode("A+") == nil)
    }
}
