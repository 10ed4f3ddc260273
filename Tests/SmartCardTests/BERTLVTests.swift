import TestVectors
import Testing
@testable import SmartCard

@Suite struct BERTLVTests {
    @Test func oneByteTagShortLength() throws {
        let (tlv, used) = try TLV.parse([0x84, 0x02, 0xAA, 0xBB])
        #expect(tlv.tag == 0x84 && tlv.value == [0xAA, 0xBB] && used == 4)
        #expect(!tlv.isConstructed)
    }

    @Test func twoAndThreeByteTags() throws {
        #expect(try TLV.parse([0xDF, 0x21, 0x01, 0x31]).0.tag == 0xDF21)
        #expect(try TLV.parse([0x9F, 0x08, 0x02, 0x01, 0x00]).0.tag == 0x9F08)
        #expect(try TLV.parse([0x5F, 0x81, 0x01, 0x00]).0.tag == 0x5F8101)
        #expect(throws: TLVError.tagTooLong(offset: 0)) { try TLV.parse([0x5F, 0x81, 0x81, 0x01, 0x00]) }
    }

    @Test(arguments: [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x1234, 0x1_0000])
    func lengthFormsRoundTrip(_ n: Int) throws {
        let value = [UInt8](repeating: 0x5A, count: n)
        let encoded = TLV(tag: 0xDF41, value: value).encoded
        let expectedLengthBytes = n < 0x80 ? 1 : n <= 0xFF ? 2 : n <= 0xFFFF ? 3 : 4
        #expect(encoded.count == 2 + expectedLengthBytes + n)
        let (tlv, used) = try TLV.parse(encoded)
        #expect(tlv.value == value && used == encoded.count)
    }

    @Test func rejectsMalformed() {
        #expect(throws: TLVError.indefiniteLength(offset: 1)) { try TLV.parse([0x70, 0x80, 0x00, 0x00]) }
        #expect(throws: TLVError.invalidLength(offset: 1)) { try TLV.parse([0x70, 0x84, 0, 0, 0, 1, 0]) }
        #expect(throws: TLVError.truncated(offset: 2)) { try TLV.parse([0x70, 0x05, 0x01]) }
        #expect(throws: TLVError.truncated(offset: 1)) { try TLV.parse([0xDF]) }
        #expect(throws: TLVError.truncated(offset: 3)) { try TLV.parse([0x70, 0x82, 0x01]) }
        #expect(throws: TLVError.empty) { try TLV.parseSingle([]) }
        #expect(throws: TLVError.trailingData(offset: 3)) { try TLV.parseSingle([0x84, 0x01, 0x00, 0x12]) }
        #expect(throws: TLVError.notConstructed(tag: 0x84)) { try TLV(tag: 0x84, value: []).children() }
    }

    @Test func paddingIsSkipped() throws {
        let (tlv, exact) = try TLV.parseSingle([0x72, 0x00, 0x00, 0xFF, 0xFF, 0x00])
        #expect(tlv.tag == 0x72 && tlv.value.isEmpty && exact == [0x72, 0x00])
        let all = try TLV.parseAll([0x00, 0x84, 0x01, 0x01, 0xFF, 0xFF, 0x85, 0x00, 0x00])
        #expect(all.map(\.tag) == [0x84, 0x85])
    }

    @Test func nestedConstructed() throws {
        let fci = TLV.constructed(0x6F, [TLV(tag: 0x84, value: [1, 2]), TLV.constructed(0xA5, [TLV(tag: 0xDF01, value: [1])])])
        let (parsed, _) = try TLV.parseSingle(fci.encoded)
        let children = try parsed.children()
        #expect(children.map(\.tag) == [0x84, 0xA5])
        #expect(try children[1].children().first(tag: 0xDF01)?.value == [1])
    }

    /// Random bytes never trap: they parse or throw a TLVError.
    @Test func randomInputNeverCrashes() {
        var rng = SplitMix64(seed: 0xB3_4E_F1_7)
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 40)
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            do {
                let all = try TLV.parseAll(bytes)
                for t in all where t.isConstructed { _ = try? t.children() }
            } catch is TLVError {
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
    }
}
