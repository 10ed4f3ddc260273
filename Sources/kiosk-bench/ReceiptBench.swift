import ArgumentParser
import Crypto
import Foundation
import Receipts

/// Issue 11: a receipt's whole cost (layout, JWS signature, QR, ESC/POS) N times, for timing
/// and for instruction counts under callgrind (`Benchmarks/callgrind.sh`).
struct ReceiptBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "receipt", abstract: "Render N subsidy receipts (80 mm).")
    @Option var iterations = 200

    func run() throws {
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: Data(repeating: 0x42, count: 32))
        var samples: [Double] = []
        var bytes = 0
        for i in 0..<iterations {
            let content = ReceiptContent(seq: Int64(i + 1), institution: "330782-H01", deviceID: "KSK-BENCH-0001",
                                         time: Date(timeIntervalSince1970: 1_795_316_400 + Double(i)), cardNumber: "3307820000000017",
                                         holderName: "王*英", body: .subsidy(SubsidyAmounts(billFen: 12345, subsidyFen: 10000, patientPaysFen: 2345,
                                                                                              allowanceLeftFen: 30000, program: "惠民医疗费用贴补")))
            let t0 = monotonicSeconds()
            bytes += try ReceiptRenderer.render(content, key: key, paper: .mm80).escpos.count
            samples.append((monotonicSeconds() - t0) * 1e6)
        }
        reportLatency("receipt_render", samples)
        print("receipt bytes_total=\(bytes)")
    }
}
