import Foundation
import KioskStore

extension StoredRecord {
    /// The record's body as the hub receives it, a raw JSON object: tests check the wire
    /// form itself (the product reads records through `SettlementRecord`).
    var wire: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
}
