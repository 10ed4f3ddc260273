import Foundation
import KioskCore
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

func extraServices(device: Device, engine: Engine, logger: Logger, upload: Bool) throws -> [any Service] {
    guard upload else {
        logger.notice("settlement upload off (--no-upload): records stay queued")
        return []
    }
    let uploader = Uploader(store: device.store, device: device.context, signingKey: device.signingKey,
                            configuration: try UploaderConfiguration(hubURL: device.config.hubURL),
                            httpClient: try Uploader.httpClient(hubCAPEM: device.config.hubCAPEM), logger: logger)
    engine.after.recordsQueued = { uploader.notify() }
    return [UploaderService(uploader: uploader)]
}
