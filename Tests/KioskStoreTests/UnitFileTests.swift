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

    /// `Key=value` lines of a unit, in order.
    static func settings(_ name: String) throws -> [(String, String)] {
        let url = try #require(try units().first { $0.lastPathComponent == name })
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { return nil }
            return (String(line[..<eq]), String(line[line.index(after: eq)...]))
        }
    }

    @Test("the district hub and its publisher share the SQLite file through a static group")
    func hubAndPublisherShareAGroup() throws {
        let hub = try Self.settings("settlement-hub.service"), publisher = try Self.settings("hub-publisher.service")
        #expect(!hub.contains { $0.0 == "DynamicUser" && $0.1 == "yes" }, "a dynamic user's files cannot be shared")
        let group = try #require(hub.first { $0.0 == "Group" }?.1)
        #expect(publisher.contains { $0.0 == "SupplementaryGroups" && $0.1.split(separator: " ").contains(Substring(group)) })
        #expect(hub.contains { $0 == ("UMask", "0007") } && hub.contains { $0 == ("StateDirectoryMode", "0770") })
        // The users exist by sysusers.d, checked by systemd-sysusers itself where it is installed.
        let sysusers = Self.root.appendingPathComponent("Provisioning/systemd/benefit-hub.sysusers")
        let text = try String(contentsOf: sysusers, encoding: .utf8)
        #expect(text.contains("u settlement-hub ") && text.contains("u hub-publisher ") && text.contains("m hub-publisher \(group)"))
        let tool = "/usr/bin/systemd-sysusers"
        guard FileManager.default.isExecutableFile(atPath: tool) else { return }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sysusers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["--dry-run", "--root=\(root.path)", sysusers.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        p.waitUntilExit()
        let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(said)")
        #expect(said.contains("Creating user 'settlement-hub'") && said.contains("Creating user 'hub-publisher'"), "\(said)")
    }
}

