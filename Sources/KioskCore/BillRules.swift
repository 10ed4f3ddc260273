import KioskProtocol
import KioskStore

/// What a tap's outcome does to the hospital bill it was for (issue 20 item 3).
public enum BillRules {
    /// Codes that end the bill `refused`: the person's or card's standing, and the kiosk's
    /// own state. The patient pays the whole bill at the cashier.
    public static let ending: Set<String> = [
        ReasonCode.personSuspended.rawValue, ReasonCode.personRevoked.rawValue, ReasonCode.cardLost.rawValue,
        ReasonCode.cardRevoked.rawValue, ReasonCode.cardReplaced.rawValue, ReasonCode.cardExpired.rawValue,
        ReasonCode.cardUnknown.rawValue, ReasonCode.notEligible.rawValue, ReasonCode.limitExhausted.rawValue,
        ReasonCode.deviceRetired.rawValue, ReasonCode.clockSuspect.rawValue, ReasonCode.snapshotMissing.rawValue,
        ReasonCode.snapshotExpired.rawValue, "store_error", "disk_full", "internal_error", "not_provisioned",
        "bill_already_subsidised", "bad_bill", "ledger_refused",
    ]

    /// Codes another tap may fix: the bill keeps waiting.
    public static let retry: Set<String> = [
        ReasonCode.cardUnreadable.rawValue, ReasonCode.cardRemoved.rawValue, ReasonCode.cardNotAuthentic.rawValue,
        ReasonCode.cardWriteRefused.rawValue, ReasonCode.wrongPatient.rawValue, "card_error", "pcscd_unavailable",
        "reader_gone", "card_pending", "decision_stale",
    ]

    /// The bill's status after a tap that did not grant.
    /// - Parameters:
    ///   - code: the decision or operating code of the tap.
    ///   - cardOnlyClock: `clock_suspect` came from the card's own time (card spec §5.5),
    ///     not the kiosk's clock: another card may still pay.
    /// - Returns: `.refused` or `.waiting` (an unknown code fails closed: `.refused`, so no
    ///   later card pays a bill whose tap went wrong in a way nobody planned for).
    public static func status(afterCode code: String, cardOnlyClock: Bool) -> BillOutcome.Status {
        if code == ReasonCode.clockSuspect.rawValue { return cardOnlyClock ? .waiting : .refused }
        if retry.contains(code) { return .waiting }
        return .refused
    }
}
