import Foundation
import KioskCore
import Logging
import ServiceLifecycle

/// Services that come with the receipt printer and the uploader (wired in once they exist).
func extraServices(device: Device, engine: Engine, logger: Logger, upload: Bool) throws -> [any Service] {
    []
}
