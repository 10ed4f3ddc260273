import ArgumentParser
import Crypto
import KioskProtocol
import Foundation
import SystemdSupport
import Glibc
import Publisher
import HubStore
import PlatformCommandLine

/// `hub-publisher`: the platform's publisher role (sync spec §5). It runs under its own user,
/// holds the authority key (a 0600 file), reads the roster and the records from the hub's
/// database and puts signed snapshots on the hub's shelf. The hub process holds no key.
@main
struct HubPublisher: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub-publisher",
        abstract: "Publish signed snapshots from the hub's roster and records; import signed roster changes.",
        subcommands: [Publish.self, Run.self, RosterImport.self, Certificates.self, VerifyArchive.self]
    )

    /// Logs with journald priorities when stderr is the journal (issue 23 item 4), then runs.
    static func main() {
        JournalLogHandler.bootstrap(level: .info)
        main(nil)
    }
}

/// The publisher's own folder (issue 21 item 1): every roster change it applied, as signed,
/// with a digest chain; only what they say is ever signed.
struct ArchiveOptions: ParsableArguments {
    @Option(help: "The publisher's own folder of verified roster changes (its user's alone, mode 0700; created when missing).")
    var archive: String
    @Option(help: "A trusted roster key and the regions it may change, KEY_ID=BASE64,REGION[,REGION…] (repeatable).")
    var rosterKey: [String] = []

    func open() throws -> RosterArchive {
        let keys: RosterKeys
        do { keys = try RosterChange.keys(options: rosterKey) } catch { throw ValidationError("\(error)") }
        do { return try RosterArchive(folder: URL(fileURLWithPath: archive, isDirectory: true), trustedKeys: keys) } catch {
            throw failure("ALERT \(error)", 4)
        }
    }
}

struct Common: ParsableArguments {
    @OptionGroup var storage: HubStorageOptions
    @OptionGroup var archive: ArchiveOptions
    @Option(help: "The region to publish, e.g. 330782.") var region: String
    @Option(help: "The authority key file: base64 of the 32-byte Ed25519 seed, mode 0600.") var authorityKeyFile: String
    @Option(help: "The authority key's identifier (authority_key_id).") var authorityKeyId: String
    @Option(help: "Days a snapshot stays valid (expires_at).") var validityDays = 30

    func validate() throws {
        guard (1...90).contains(validityDays) else { throw ValidationError("--validity-days must be 1…90") }
    }

    func publisher() throws -> SnapshotPublisher {
        let database = try open(storage)
        var config: PublisherConfiguration
        do {
            config = PublisherConfiguration(region: region, authorityKeyID: authorityKeyId,
                                            authorityKey: try PublisherConfiguration.readKey(file: authorityKeyFile))
        } catch { throw failure("\(error)", 2) }
        config.validity = TimeInterval(validityDays) * 86_400
        return SnapshotPublisher(database: database, configuration: config, archive: try archive.open())
    }
}

/// The hub's database, or exit 3 with why.
func open(_ storage: HubStorageOptions) throws -> HubDatabase {
    do { return try storage.open() } catch { throw failure("cannot open \(storage.name): \(error)", 3) }
}

func failure(_ message: String, _ code: Int32) -> ExitCode {
    FileHandle.standardError.write(Data("hub-publisher: \(message)\n".utf8))
    return ExitCode(code)
}

func report(_ p: Publication?) {
    guard let p else { print("nothing changed: nothing published"); return }
    print("published \(p.snapshot.snapshotID) (\(p.snapshot.kind)\(p.snapshot.baseSnapshotID.map { " on \($0)" } ?? ""), \(p.records) records, \(p.snapshot.bytes) bytes\(p.recomputed ? ", whole state read" : ", only what changed read"))")
    if p.leftOut > 0 {
        // Issue 21: amounts outside the upload spec's bounds never break a sum; they are left out.
        FileHandle.standardError.write(Data("hub-publisher: ALERT \(p.leftOut) record(s) with amounts outside 0–99,999,999 fen left out of S (stored before the hub checked amounts)\n".utf8))
    }
    for o in p.overLimit {
        // Sync spec §5: an over-grant for the operators to recover.
        FileHandle.standardError.write(Data("hub-publisher: ALERT over limit: person \(Masking.personRef(o.personRef)) \(o.program) \(o.period): \(o.usedFen) fen settled, limit \(o.limitFen)\n".utf8))
    }
}

struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish the region's next snapshot now (a delta, or a full when due).")
    @OptionGroup var common: Common
    @Flag(help: "Publish a full whatever is due.") var full = false
    func run() throws {
        let publisher = try common.publisher()
        do {
            if let archive = publisher.archive { try archive.reconcile(publisher.database, now: Date()) }
            report(try publisher.publish(forceFull: full))
        } catch let e as RosterArchiveError {
            throw failure("ALERT \(e)", 1)
        } catch { throw failure("\(error)", 1) }
    }
}

struct DeviceCA: ParsableArguments {
    @Option(help: "The device-CA key file (base64 of the 32-byte Ed25519 seed, mode 0600): answer certificate requests.") var deviceCaKeyFile: String?
    @Option(help: "The device-CA key's identifier, as certificates name it.") var deviceCaKeyId: String?

    func validate() throws {
        if (deviceCaKeyFile == nil) != (deviceCaKeyId == nil) { throw ValidationError("--device-ca-key-file and --device-ca-key-id go together") }
    }

    func issuer(_ db: HubDatabase) throws -> CertificateIssuer? {
        guard let file = deviceCaKeyFile, let id = deviceCaKeyId else { return nil }
        do { return CertificateIssuer(database: db, caKeyID: id, caKey: try PublisherConfiguration.readKey(file: file)) } catch {
            throw failure("device-CA \(error)", 2)
        }
    }
}

/// Answers pending certificate requests once: only for keys a verified roster change registered.
func answerCertificates(_ issuer: CertificateIssuer, _ archive: RosterArchive) throws {
    for id in try issuer.issuePending(archive: archive) { print("certificate issued for \(id) (\(issuer.days) days)") }
}

/// Roster changes the hubs queued: verified, archived and applied, or refused with an alert.
func pullInbox(_ archive: RosterArchive, _ database: HubDatabase) throws {
    for o in try archive.pullInbox(database, now: Date()) {
        if let why = o.refusal {
            FileHandle.standardError.write(Data("hub-publisher: ALERT roster change \(o.changeID) from the inbox refused: \(why)\n".utf8))
        } else if let why = o.pending {
            FileHandle.standardError.write(Data("hub-publisher: roster change \(o.changeID) not finished, next look: \(why)\n".utf8))
        } else {
            print("applied \(o.changeID) from the inbox\(o.urgent ? " (urgent)" : "")")
        }
    }
}

struct Certificates: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Issue device certificates for the requests kiosks made through the hub.")
    @OptionGroup var storage: HubStorageOptions
    @OptionGroup var archive: ArchiveOptions
    @OptionGroup var ca: DeviceCA
    func run() throws {
        let database = try open(storage)
        let archive = try archive.open()
        guard let issuer = try ca.issuer(database) else { throw ValidationError("--device-ca-key-file and --device-ca-key-id are required") }
        do { try answerCertificates(issuer, archive) } catch { throw failure("\(error)", 1) }
    }
}

struct VerifyArchive: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify-archive",
                                                    abstract: "Read every archived roster change again against its link in the digest chain.")
    @OptionGroup var archive: ArchiveOptions
    func run() throws {
        let archive = try archive.open()
        do { print("\(try archive.verifyFiles()) roster changes verified; the chain holds") } catch { throw failure("ALERT \(error)", 1) }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish in a loop: every --interval seconds when anything changed (urgent roster changes within 60 s), a full daily; answer certificate requests when given the device-CA key.")
    @OptionGroup var common: Common
    @OptionGroup var ca: DeviceCA
    @Option(help: "Seconds between looks (at most 60: urgent changes go out within 60 s).") var interval = 10
    func validate() throws { guard (1...60).contains(interval) else { throw ValidationError("--interval must be 1…60") } }
    func run() throws {
        let publisher = try common.publisher()
        let issuer = try ca.issuer(publisher.database)
        // SIGTERM between publications: a publication is one file and one transaction; stopping
        // between them loses nothing (the next run recomputes from the database).
        signal(SIGTERM) { _ in Glibc.exit(0) }
        var standingBy = false
        guard let archive = publisher.archive else { throw failure("no roster archive", 4) }
        while true {
            do {
                // One publisher works at a time: the lock first, then (issue 21 item 1) the
                // roster changes the hubs queued (only the publisher applies them; its archive
                // and the database brought together), then the publication.
                try publisher.database.holdPublicationLock()
                do { try pullInbox(archive, publisher.database) } catch {
                    FileHandle.standardError.write(Data("hub-publisher: roster inbox: \(error)\n".utf8))
                }
                try archive.reconcile(publisher.database, now: Date())
                if let p = try publisher.publish() { report(p) }
                if standingBy { print("publication lock taken: this publisher publishes now") }
                standingBy = false
            } catch is PublicationLockHeld {
                // Several publishers, one at a time: this one takes over when the holder dies.
                if !standingBy { print("another publisher holds the publication lock: standing by") }
                standingBy = true
            } catch let e as RosterArchiveError {
                FileHandle.standardError.write(Data("hub-publisher: ALERT \(e); trying again in \(interval) s\n".utf8))
            } catch {
                FileHandle.standardError.write(Data("hub-publisher: \(error); trying again in \(interval) s\n".utf8))
            }
            if let issuer, !standingBy {
                do { try answerCertificates(issuer, archive) } catch {
                    FileHandle.standardError.write(Data("hub-publisher: certificates: \(error)\n".utf8))
                }
            }
            fflush(nil)
            Thread.sleep(forTimeInterval: TimeInterval(interval))
        }
    }
}

struct RosterImport: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "roster-import",
                                                    abstract: "Verify a signed roster change, keep it in the publisher's archive and apply it to the hub's roster.")
    @OptionGroup var storage: HubStorageOptions
    @OptionGroup var archive: ArchiveOptions
    @Argument(help: "The roster change (JSON Lines, signed).") var file: String

    func run() throws {
        guard FileManager.default.isReadableFile(atPath: file) else { throw failure("cannot read \(file)", 3) }
        let archive = try archive.open()
        let database = try open(storage)
        do {
            // Streamed: verified, copied into the archive, verified again, applied in flat memory.
            let (change, urgent) = try archive.apply(file: URL(fileURLWithPath: file), to: database, now: Date()) {
                print("verified \($0.changeID) (\($0.records) records, signed by \($0.rosterKeyID)); applying")
                fflush(nil)
            }
            print("applied \(change.changeID) (region \(change.region), \(change.records) entries\(urgent ? ", urgent" : ""))")
        } catch let r as RosterChange.Refusal {
            throw failure("refused: \(r)", 2)
        } catch let e as RosterArchiveError {
            throw failure("ALERT \(e)", 4)
        }
    }
}
