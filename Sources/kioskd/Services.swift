import Foundation
import KioskCore
import KioskStore
import Logging
import ServiceLifecycle
import Settlement
import SmartCard

/// Reader watcher → card sessions. Ends with the graceful shutdown (the watcher's
/// thread is woken by SCardCancel when the iteration stops).
struct ReaderService: Service {
    let engine: Engine
    let filter: ReaderFilter
    let logger: Logger
    /// Told when a card comes and goes: the uploader holds its batches meanwhile.
    let presence: PatientPresence

    func run() async throws {
        let watcher = ReaderWatcher(filter: filter, logger: logger)
        var active: String?
        await withGracefulShutdownHandler {
            for await event in watcher.cancelOnGracefulShutdown() {
                logger.info("reader event", metadata: ["event": "\(event)"])
                switch event {
                case .cardInserted(let reader, _), .cardFound(let reader, _):
                    // A card found lying on a reader just listed (at start, after pcscd came
                    // back) was not tapped: it counts for no bill (issue 20).
                    var fresh = true
                    if case .cardFound = event { fresh = false }
                    guard active == nil || active == reader else { continue }
                    active = reader
                    presence.arrived()
                    await engine.cardInserted(reader, fresh: fresh)
                case .cardRemoved(let reader):
                    if active == reader { active = nil; presence.left() }
                    await engine.cardRemoved(reader)
                case .readerRemoved(let reader):
                    if active == reader { active = nil; presence.left(); await engine.cardRemoved(reader) }
                case .serviceLost:
                    active = nil
                    presence.left()
                    await engine.serviceLost()
                case .serviceRestored:
                    await engine.serviceRestored()
                case .readerAdded:
                    break
                }
            }
        } onGracefulShutdown: {
            logger.info("reader service stopping")
        }
    }
}

/// The screen: applies the one ordered stream of changes to the hub (one task, so in the
/// order they were published), re-sends the state every 15 s so dead SSE connections are
/// noticed, and ends every stream on shutdown.
struct ScreenService: Service {
    let hub: ScreenHub
    let feed: ScreenFeed

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await change in feed.changes.cancelOnGracefulShutdown() { await hub.update(change) }
            }
            group.addTask {
                try? await cancelWhenGracefulShutdown {
                    while true {
                        try await Task.sleep(for: .seconds(15))
                        await hub.heartbeat()
                    }
                }
            }
        }
        feed.finish()
        await hub.finishAll()
    }
}

/// Keeps the one-time screen URL fresh (renewed when its 5 minutes ran out).
struct ScreenURLService: Service {
    let session: ScreenSession

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .seconds(ScreenSession.urlSeconds / 2))
                session.renewIfDue()
            }
        }
    }
}

/// Issue 21 item 6: personal data kept no longer than needed. At start and every 6 hours:
/// legal-aid contact phones 30 days after the hub answered, acknowledged records after 400
/// days (`KioskStore.forgetExpired`).
struct RetentionService: Service {
    let store: KioskStore
    let now: @Sendable () -> Date
    let logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                do {
                    let f = try store.forgetExpired(now: now())
                    if f.contactPhones > 0 || f.records > 0 {
                        logger.notice("personal data past its time deleted", metadata: ["contact_phones": "\(f.contactPhones)", "records": "\(f.records)"])
                    }
                } catch {
                    logger.error("cannot delete expired personal data", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(6 * 3600))
            }
        }
    }
}
