import Foundation

/// How long a real contact CPU card takes to answer (issue 24 item 2), so that a benchmark
/// against the emulator sees a card's own time and can report what the product adds on top.
///
/// The model, per command–response pair:
/// - **transmission** at the reader's T=1 rate: every byte of the command and of the
///   response (with the T=1 block's 3-byte prologue and 1-byte epilogue each way) takes
///   11 elementary time units (start bit, 8 data bits, parity, 1 guard time), so
///   `11 × bytes / rate` seconds;
/// - **processing**: a fixed time per command (decoding, file system), plus, for UPDATE
///   BINARY, the EEPROM's page writes;
/// - **cryptography**: Ed25519 on the card's processor, a signature for INTERNAL
///   AUTHENTICATE and for the write's acknowledgement, a verification for PSO VERIFY
///   CERTIFICATE and for the write's device signature.
public struct CardTiming: Sendable, Equatable {
    /// The reader–card rate in bits per second (T=1 after PPS).
    public var bitsPerSecond: Double
    /// Time the card takes for any command before its own work, in milliseconds.
    public var commandMilliseconds: Double
    /// One EEPROM page write, in milliseconds, and the page size in bytes.
    public var pageWriteMilliseconds: Double
    /// The EEPROM's page size in bytes.
    public var pageBytes: Int
    /// One Ed25519 signature on the card, in milliseconds.
    public var signMilliseconds: Double
    /// One Ed25519 verification on the card, in milliseconds.
    public var verifyMilliseconds: Double
    /// Generating a challenge (the card's random number generator), in milliseconds.
    public var challengeMilliseconds: Double

    /// A fast modern card: a secure element with an elliptic-curve coprocessor, PPS to
    /// F=372/D=12 at 3.57 MHz (≈ 115.2 kbit/s), 1 ms per command, 64-byte pages written in
    /// 2 ms, an Ed25519 signature in 40 ms and a verification in 60 ms.
    public static let fast = CardTiming(bitsPerSecond: 115_200, commandMilliseconds: 1, pageWriteMilliseconds: 2, pageBytes: 64,
                                        signMilliseconds: 40, verifyMilliseconds: 60, challengeMilliseconds: 1)
    /// A slow card of an older generation: no PPS (the default 9,600 bit/s), 5 ms per
    /// command, 32-byte pages written in 5 ms, an Ed25519 signature in 250 ms and a
    /// verification in 400 ms (software arithmetic on an 8/16-bit core).
    public static let slow = CardTiming(bitsPerSecond: 9_600, commandMilliseconds: 5, pageWriteMilliseconds: 5, pageBytes: 32,
                                        signMilliseconds: 250, verifyMilliseconds: 400, challengeMilliseconds: 3)

    /// The profiles by name, for `virtual-card --timing NAME`.
    public static let profiles: [String: CardTiming] = ["fast": .fast, "slow": .slow]

    /// A card with these figures.
    public init(bitsPerSecond: Double, commandMilliseconds: Double, pageWriteMilliseconds: Double, pageBytes: Int,
                signMilliseconds: Double, verifyMilliseconds: Double, challengeMilliseconds: Double) {
        self.bitsPerSecond = bitsPerSecond
        self.commandMilliseconds = commandMilliseconds
        self.pageWriteMilliseconds = pageWriteMilliseconds
        self.pageBytes = pageBytes
        self.signMilliseconds = signMilliseconds
        self.verifyMilliseconds = verifyMilliseconds
        self.challengeMilliseconds = challengeMilliseconds
    }

    /// The seconds a card of this profile takes for `command` and its `response`, from the
    /// command's first byte leaving the reader to the response's last byte arriving.
    public func seconds(command: [UInt8], response: [UInt8]) -> Double {
        let framed = Double(command.count + 4 + response.count + 4)
        var ms = framed * 11 / bitsPerSecond * 1000 + commandMilliseconds
        let ok = response.count >= 2 && response[response.count - 2] == 0x90 || response.count >= 2 && response[response.count - 2] == 0x61
        guard command.count >= 4, ok else { return ms / 1000 }
        switch command[1] {
        case 0x88: ms += signMilliseconds                       // INTERNAL AUTHENTICATE: the card signs
        case 0x2A: ms += verifyMilliseconds                     // PSO VERIFY CERTIFICATE: the card verifies the CA's signature
        case 0x84: ms += challengeMilliseconds                  // GET CHALLENGE
        case 0xD6:                                              // UPDATE BINARY: verify, write the pages, sign the acknowledgement
            let data = max(0, command.count - 5)
            let pages = (data + pageBytes - 1) / pageBytes
            ms += verifyMilliseconds + Double(pages) * pageWriteMilliseconds + (response.count > 2 ? signMilliseconds : 0)
        default: break
        }
        return ms / 1000
    }
}
