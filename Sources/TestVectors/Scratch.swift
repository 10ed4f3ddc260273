import Foundation

/// Fresh folders for tests, all under one folder of this test process
/// (`$TMPDIR/benefit-kiosk-tests-PID`), removed when the process exits, so a run leaves
/// nothing behind. `BK_KEEP_TEST_FILES=1` keeps them for a look after a failure.
public enum Scratch {
    public static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("benefit-kiosk-tests-\(getpid())", isDirectory: true)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        if ProcessInfo.processInfo.environment["BK_KEEP_TEST_FILES"] != "1" {
            atexit { try? FileManager.default.removeItem(at: Scratch.root) }
        }
        return url
    }()

    /// A new empty folder named after `label`. The scratch root is the test process's own
    /// temporary folder, so this stops the run only when that cannot be written at all.
    public static func folder(_ label: String) -> URL {
        do { return try makeFolder(label) } catch { preconditionFailure("scratch folder \(label): \(error)") }
    }

    /// A new empty folder named after `label`; throws when it cannot be made.
    public static func makeFolder(_ label: String) throws -> URL {
        let url = root.appendingPathComponent("\(label)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A path for a file named after `label` (not created), in a folder of its own.
    public static func file(_ label: String, extension ext: String) -> URL {
        root.appendingPathComponent("\(label)-\(UUID().uuidString).\(ext)")
    }
}
