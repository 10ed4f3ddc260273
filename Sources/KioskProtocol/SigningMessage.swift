/// Every byte string a party of the contract signs, spelled once: the card and kiosk build
/// them to sign, the hub and the publisher to verify. (The legal-aid consent's challenge is
/// `SettlementRecord.LegalAidApplication.consentPreimage`; a receipt signs its JWS input.)
public enum SigningMessage {
    /// `"USAGE-V2"` ‖ card number ‖ the `72` value's bytes before `DF46`: what the writing
    /// device signs into `DF46` (card spec §5.1).
    public static func usage(cardNumber: String, signedBytes: [UInt8]) -> [UInt8] {
        Array("USAGE-V2".utf8) + Array(cardNumber.utf8) + signedBytes
    }

    /// `"USAGE-ACK-V2"` ‖ card number ‖ `DF43` (4 bytes, big-endian) ‖ `DF48` (16 bytes): what
    /// the card signs when it takes a write (card spec §5.4).
    public static func usageAcknowledgement(cardNumber: String, sequence: UInt32, challenge: [UInt8]) -> [UInt8] {
        Array("USAGE-ACK-V2".utf8) + Array(cardNumber.utf8)
            + [UInt8(sequence >> 24), UInt8(sequence >> 16 & 0xFF), UInt8(sequence >> 8 & 0xFF), UInt8(sequence & 0xFF)] + challenge
    }

    /// `"CARD-AUTH-V2"` ‖ card number ‖ challenge ‖ SHA-256 of the `EF.USAGE` object: what the
    /// card signs to prove itself (card spec §4), and a legal-aid consent (upload spec §1).
    public static func cardAuthentication(cardNumber: String, challenge: [UInt8], usageDigest: [UInt8]) -> [UInt8] {
        Array("CARD-AUTH-V2".utf8) + Array(cardNumber.utf8) + challenge + usageDigest
    }

    /// `"SYNC-V1\n"` ‖ method ‖ `"\n"` ‖ path-and-query ‖ `"\n"` ‖ `X-Date`: what a device signs
    /// into `X-Signature` on every sync and certificate request (sync spec §2).
    public static func sync(method: String, pathAndQuery: String, date: String) -> [UInt8] {
        Array("SYNC-V1\n\(method)\n\(pathAndQuery)\n\(date)".utf8)
    }
}
