import Foundation
import Testing

/// The systemd units shipped in `Provisioning/` (issue 23 item 4): systemd expands `${…}`
/// on `Exec*` lines only; anywhere else it is taken literally (a `ReadWritePaths=${HUB_SHELF}`
/// under `ProtectSystem=strict` left the publisher unable to write its shelf).
@Suite struct UnitFileTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func units() throws -> [URL] {
        let provisioning = root.appendingPathComponent("Provisioning")
        let all = FileManager.default.enumerator(at: provisioning, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        return all.filter { $0.pathExtension == "service" }
    }

    @Test("no unit uses ${VARIABLE} outside the lines systemd expands it on")
    func variablesOnlyOnExecLines() throws {
        let units = try Self.units()
        #expect(units.count >= 5, "\(units)")
        for unit in units {
            var continued = false
            for line in try String(contentsOf: unit, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
                let text = line.trimmingCharacters(in: .whitespaces)
                let onExec = continued || text.hasPrefix("Exec")
                continued = onExec && text.hasSuffix("\\")
                guard !text.hasPrefix("#"), !onExec, !text.hasPrefix("Environment") else { continue }
                #expect(!text.contains("${"), "\(unit.lastPathComponent): \(text)")
            }
        }
    }
}
