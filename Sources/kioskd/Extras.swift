import Foundation
import KioskCore
import KioskStore
import Logging
import ServiceLifecycle
import Settlement

/// The settlement uploader as a service: drains the queue to the hub with the upload
/// spec's backoff, woken when a record is queued; stops on graceful shutdown (a batch in
/// flight is simply sent again next time: the hub answers `duplicate`).
struct UploaderService: Service {
    let uploader: Uploader
    func run() async throws {
        try? await cancelWhenGracefulShutdown { await uploader.run() }
    }
}

/// Snapshot sync as a service (sync spec §4): a round at start-up, then long polls; backoff
/// with jitter after a failure. Stops on graceful shutdown (a partial download stays in the
/// state folder and resumes next time).
struct SyncService: Service {
    let sync: SnapshotSync
    func run() async throws {
        try? await cancelWhenGracefulShutdown { await sync.run() }
    }
}

/// Device certificate renewal (sync spec §5): an hourly look; when under 30 days are left it
/// fetches a renewed certificate from the hub or asks for one (then looks again in 5 minutes),
/// so a kiosk offline for weeks renews before its certificate runs out.
struct CertificateService: Service {
    let renewal: CertificateRenewal
    let device: Device
    let clock: KioskClock
    let logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            try await Task.sleep(for: .seconds(10))
            while !Task.isCancelled {
                let (device, now) = (self.device, clock.now())
                let outcome = await renewal.round(notAfter: device.certificate?.notAfter) { bytes in
                    let cert = try device.installCertificate(bytes, now: now)
                    return (cert.notAfter, "\(cert.caKeyID), valid \(cert.validFrom) to \(cert.validThrough)")
                }
                switch outcome {
                case .notDue: break
                case .installed: logger.notice("device certificate renewed", metadata: ["certificate": "\(outcome)"])
                case .requested: logger.notice("device certificate requested from the hub")
                case .refused, .failed: logger.warning("device certificate renewal", metadata: ["outcome": "\(outcome)"])
                }
                try await Task.sleep(for: outcome == .requested ? .seconds(300) : .seconds(3600))
            }
        }
    }
}


func extraServices(device: Device, engine: Engine, clock: KioskClock, logger: Logger, upload: Bool,
                   sync: Bool, presence: PatientPresence) throws -> (services: [any Service], sync: SnapshotSync?) {
    var services: [any Service] = []
    let client = try Uploader.httpClient(hubCAPEM: device.config.hubCAPEM)
    var environment = UploaderEnvironment.live
    environment.now = clock.now
    if upload {
        var uploads = environment
        uploads.beforeBatch = { await presence.waitWhileServing() }   // the patient first (issue 24 item 3)
        let uploader = Uploader(store: device.store, device: device.context, signingKey: device.signingKey,
                                configuration: try UploaderConfiguration(hubURL: device.config.hubURL),
                                httpClient: client, environment: uploads, logger: logger)
        engine.after.recordsQueued = { uploader.notify() }
        services.append(UploaderService(uploader: uploader))
    } else {
        logger.notice("settlement upload off (--no-upload): records stay queued")
    }
    guard sync else {
        logger.notice("snapshot sync off (--no-sync): snapshots change only by kioskctl snapshot install")
        return (services, nil)
    }
    let syncer = SnapshotSync(store: device.store, device: device.context, signingKey: device.signingKey,
                              trustedAuthorities: device.trustedAuthorities, directory: device.stateDir.appendingPathComponent("sync"),
                              configuration: try SyncConfiguration(hubURL: device.config.hubURL, region: device.config.region),
                              httpClient: client, environment: environment, logger: logger)
    services.append(SyncService(sync: syncer))
    let renewal = CertificateRenewal(configuration: try SyncConfiguration(hubURL: device.config.hubURL, region: device.config.region),
                                     device: device.context, signingKey: device.signingKey, httpClient: client, environment: environment)
    services.append(CertificateService(renewal: renewal, device: device, clock: clock, logger: logger))
    return (services, syncer)
}
