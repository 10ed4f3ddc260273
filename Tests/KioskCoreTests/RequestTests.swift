import Foundation
import KioskCore
import KioskProtocol
import Testing

/// The local API's request types: `Decodable`, read strictly (issue 22 item 3).
@Suite struct RequestTests {
    @Test("a legal-aid application: matter and phone checked byte by byte; no other key; no key twice")
    func legalAid() throws {
        #expect(try LegalAidRequest.parse(Array(#"{"matter":"labor_remuneration"}"#.utf8)) == LegalAidRequest(matter: "labor_remuneration"))
        #expect(try LegalAidRequest.parse(Array(#"{"matter":"x","phone":"0579-8888 1234"}"#.utf8)).phone == "0579-8888 1234")
        #expect(try LegalAidRequest.parse(Array(#"{"matter":"x","phone":null}"#.utf8)).phone == nil)
        let bad = [#"{"matter":"X"}"#, #"{"matter":""}"#, #"{"matter":"\#(String(repeating: "a", count: 65))"}"#,
                   #"{"matter":"x","phone":"<script>"}"#, #"{"matter":"x","phone":123}"#, #"{"matter":"x","extra":1}"#,
                   #"{"matter":"x","matter":"y"}"#, #"{"matter":["x"]}"#, #"["x"]"#, "matter=x", #"{"phone":"1"}"#]
        for b in bad {
            #expect(throws: StrictDecoder.Failure.self, "\(b)") { try LegalAidRequest.parse(Array(b.utf8)) }
        }
        #expect(throws: StrictDecoder.Failure("unknown fields: extra")) { try LegalAidRequest.parse(Array(#"{"matter":"x","extra":1}"#.utf8)) }
    }

    @Test("a confirmation is one positive integer and nothing else")
    func confirmation() throws {
        #expect(try ConfirmationRequest.parse(Array(#"{"confirmation":3}"#.utf8)).confirmation == 3)
        for b in [#"{"confirmation":0}"#, #"{"confirmation":-1}"#, #"{"confirmation":1.0}"#, #"{"confirmation":"3"}"#,
                  #"{"confirmation":3,"x":1}"#, #"{"confirmation":true}"#, "{}"] {
            #expect(throws: StrictDecoder.Failure.self, "\(b)") { try ConfirmationRequest.parse(Array(b.utf8)) }
        }
    }

    @Test("a bill: no key twice, patient_id_number null refused rather than taken for absent")
    func billStrictness() throws {
        #expect(throws: BillRequest.ParseError.self) { try BillRequest.parse(Array(#"{"bill_reference":"B1","bill_fen":1,"bill_fen":100000}"#.utf8)) }
        #expect(throws: BillRequest.ParseError.self) { try BillRequest.parse(Array(#"{"bill_reference":"B1","bill_fen":1,"patient_id_number":null}"#.utf8)) }
        #expect(throws: BillRequest.ParseError.fields("bill_fen must be an integer number of fen (not 1.0, 1e3, a string or a boolean)")) {
            try BillRequest.parse(Array(#"{"bill_reference":"B1","bill_fen":1.5}"#.utf8))
        }
        #expect(try BillRequest.parse(Array(#" {"bill_fen":100,"bill_reference":"B1"} "#.utf8)) == BillRequest(billReference: "B1", billFen: 100))
    }
}
