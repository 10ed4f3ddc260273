import Crypto
import Foundation
import Testing
@testable import Receipts

@Suite struct JWSTests {
    /// receipt-and-batch.json: Ed25519 is deterministic, so the same payload and key give the vector exactly.
    @Test func signingReproducesTheVector() throws {
        let expected = try Fixtures.receiptJWS()
        #expect(ReceiptJWS.payload(for: vectorSubsidy)
            == #"{"r":"KSK-TEST-0001-1","k":"ms","c":"3307********0017","t":1795316400,"b":10000,"s":10000}"#)
        #expect(ReceiptJWS.header(kid: "KSK-TEST-0001") == #"{"alg":"EdDSA","kid":"KSK-TEST-0001"}"#)
        let jws = try ReceiptJWS.sign(content: vectorSubsidy, key: try Fixtures.privateKey("KSK-TEST-0001"))
        #expect(jws == expected)
        #expect(jws.utf8.count == 258)
    }

    @Test func verifyAcceptsTheVector() throws {
        let keys = ["KSK-TEST-0001": try Fixtures.publicKey("KSK-TEST-0001")]
        let r = try ReceiptJWS.verify(try Fixtures.receiptJWS(), keys: keys)
        #expect(r == VerifiedReceipt(deviceID: "KSK-TEST-0001", recordID: "KSK-TEST-0001-1", kind: .subsidy,
                                     maskedCardNumber: "3307********0017", unixTime: 1_795_316_400,
                                     billFen: 10000, subsidyFen: 10000, matterCode: nil))
        #expect(r.time == vectorTime)
    }

    @Test func verifyRejectsATamperedPayload() throws {
        let keys = ["KSK-TEST-0001": try Fixtures.publicKey("KSK-TEST-0001")]
        let parts = try Fixtures.receiptJWS().split(separator: ".").map(String.init)
        let forged = Base64URL.encode(Array(#"{"r":"KSK-TEST-0001-1","k":"ms","c":"3307********0017","t":1795316400,"b":90000,"s":90000}"#.utf8))
        #expect(throws: ReceiptJWSError.badSignature) { try ReceiptJWS.verify([parts[0], forged, parts[2]].joined(separator: "."), keys: keys) }
        // One bit of the signature flipped.
        var signature = try #require(Base64URL.decode(parts[2]))
        signature[10] ^= 1
        #expect(throws: ReceiptJWSError.badSignature) {
            try ReceiptJWS.verify([parts[0], parts[1], Base64URL.encode(signature)].joined(separator: "."), keys: keys)
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
                    Base64URL.encode(Array("[]".utf8)) + "." + parts[1] + "." + parts[2]] {
            #expect(throws: ReceiptJWSError.self) { try ReceiptJWS.verify(bad, keys: keys) }
            do { _ = try ReceiptJWS.verify(bad, keys: keys) } catch let e as ReceiptJWSError {
                guard case .malformed = e else { Issue.record("\(bad): \(e)"); continue }
            }
        }
    }

    /// Signed by a key whose payload the verifier cannot read: the signature checks, the payload does not.
    @Test func verifyRejectsAPayloadWithoutItsFields() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let input = Base64URL.encode(Array(ReceiptJWS.header(kid: "KSK-TEST-0001").utf8)) + "." + Base64URL.encode(Array(#"{"r":"x","k":"ms"}"#.utf8))
        let jws = input + "." + Base64URL.encode(Array(try key.signature(for: Array(input.utf8))))
        #expect(throws: ReceiptJWSError.malformed("payload lacks r, k, c or t")) {
            try ReceiptJWS.verify(jws, keys: ["KSK-TEST-0001": key.publicKey])
        }
    }

    /// The budget with long but real values: a 19-character device id, a 27-character record id, a 19-digit
    /// card, a time in 2099, amounts of ¥9,999,999.99 — the subsidy comes to 297 bytes.
    @Test func allKindsRoundTripUnder300BytesWithLongValues() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0003")
        let long = [
            ReceiptContent.subsidy(recordID: "KSK-330782-H01-0001-9999999", institution: "浙江省某某市某某县人民医院门诊收费处",
                                   deviceID: "KSK-330782-H01-0001", time: Date(timeIntervalSince1970: 4_102_444_799),
                                   cardNumber: "6217002430012345678", holderName: "欧阳诸葛长名字",
                                   billFen: 999_999_999, subsidyFen: 999_999_999, patientPaysFen: 0, allowanceLeftFen: 0),
            ReceiptContent.reversal(recordID: "KSK-330782-H01-0001-9999999", institution: "330782-H01", deviceID: "KSK-330782-H01-0001",
                                    time: vectorTime, cardNumber: "6217002430012345678", holderName: "王秀英",
                                    reversedRecordID: "KSK-330782-H01-0001-9999998", amountFen: 99_999_999_999, reason: String(repeating: "长", count: 80)),
            ReceiptContent.legalAid(recordID: "KSK-330782-H01-0001-9999999", institution: "330782-H01", deviceID: "KSK-330782-H01-0001",
                                    time: vectorTime, cardNumber: "6217002430012345678", holderName: "李建国",
                                    matterCode: "labor_remuneration", matterName: "请求支付劳动报酬"),
        ]
        for content in long {
            let jws = try ReceiptJWS.sign(content: content, key: key)
            #expect(jws.utf8.count < 300, "\(content.kind): \(jws.utf8.count) bytes")
            let r = try ReceiptJWS.verify(jws, keys: ["KSK-330782-H01-0001": key.publicKey])
            #expect(r.kind == content.kind && r.recordID == content.recordID && r.maskedCardNumber == "6217***********5678")
            #expect(!jws.contains("王") && r.matterCode == (content.kind == .legalAid ? "labor_remuneration" : nil))
        }
    }

    @Test func tooLongIsRefused() throws {
        var content = vectorSubsidy
        content.recordID = String(repeating: "R", count: 120)
        #expect(throws: ReceiptJWSError.self) { try ReceiptJWS.sign(content: content, key: try Fixtures.privateKey("KSK-TEST-0001")) }
        do { _ = try ReceiptJWS.sign(content: content, key: try Fixtures.privateKey("KSK-TEST-0001")) } catch ReceiptJWSError.tooLong(let n) {
            #expect(n >= 300)
        }
    }

    @Test func jsonStringsAreEscapedAndTheSignatureStillVerifies() throws {
        #expect(JSONText.string("a\"b\\c\n\u{1}é😀") == #""a\"b\\c\n\u0001\u00e9\ud83d\ude00""#)
        var content = vectorLegalAid
        content.recordID = "R\"1\\é"
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        let r = try ReceiptJWS.verify(try ReceiptJWS.sign(content: content, key: key), keys: ["KSK-TEST-0001": key.publicKey])
        #expect(r.recordID == "R\"1\\é" && r.matterCode == "labor_remuneration" && r.kind == .legalAid)
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
