import Crypto
import Foundation
import Testing
@testable import Receipts

/// Not asserted (timing depends on the machine): reports what one receipt costs, layout + JWS + QR + ESC/POS.
@Suite struct TimingTests {
    @Test func timePerReceipt() throws {
        let key = try Fixtures.privateKey("KSK-TEST-0001")
        _ = try ReceiptRenderer.render(vectorSubsidy, key: key, paper: .mm58)
        for paper in Paper.allCases {
            let n = 200
            let clock = ContinuousClock()
            var total = 0
            let elapsed = try clock.measure {
                for i in 0..<n {
                    var content = vectorSubsidy
                    content.recordID = "KSK-TEST-0001-\(i)"
                    total += try ReceiptRenderer.render(content, key: key, paper: paper).escpos.count
                }
            }
            #expect(total > 0)
            let perReceipt = elapsed / n
            print("receipt timing: \(paper.rawValue) \(perReceipt) per receipt (layout + JWS + QR + ESC/POS, mean of \(n))")
        }
    }
}
