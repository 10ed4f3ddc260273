import Synchronization

/// Issue 24 item 3: the patient first. While a card is on the reader, a patient is being
/// served (a pre-settlement, 确认, a card write, a slip); the uploader holds its next batch
/// until the card leaves, so a kiosk on two cores does not build, sign and send 500 records
/// (nor make a hub on the same machine check them) while a patient waits for the screen.
/// Records are durable in the queue; waiting costs them nothing. A card forgotten on the
/// reader holds nothing past `longest`: uploads then go on as if it were gone.
public final class PatientPresence: Sendable {
    private let since = Mutex<ContinuousClock.Instant?>(nil)
    /// The longest a card on the reader holds a batch.
    public let longest: Duration

    /// Nobody at the kiosk yet.
    public init(longest: Duration = .seconds(30)) {
        self.longest = longest
    }

    /// A card came to the reader.
    public func arrived() { since.withLock { if $0 == nil { $0 = .now } } }

    /// The card left (or the reader, or pcscd).
    public func left() { since.withLock { $0 = nil } }

    /// Whether a card is on the reader and has been for less than `longest`.
    public var serving: Bool {
        since.withLock { s in s.map { ContinuousClock.now - $0 < longest } ?? false }
    }

    /// Returns once nobody is being served: at once when no card is on the reader, else when
    /// it leaves or has stayed `longest`. Looks every `every`; returns early when cancelled.
    public func waitWhileServing(every: Duration = .milliseconds(50)) async {
        while serving && !Task.isCancelled {
            try? await Task.sleep(for: every)
        }
    }
}
