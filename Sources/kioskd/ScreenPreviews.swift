import KioskProtocol
import Foundation
import KioskCore

/// The screen's pages for the sample states (`ScreenSamples`): what tests screenshot at every
/// panel size and check for fit, contrast, tap targets and keypad use, and what the README shows.
enum ScreenPreviews {
    /// Writes `<name>.html` for every sample state, with the page's script and style beside them.
    static func write(into dir: URL) throws -> [String] {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func resource(_ name: String) throws -> Data {
            guard let url = Bundle.module.url(forResource: "Screens/\(name)", withExtension: nil) else {
                throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: name])
            }
            return try Data(contentsOf: url)
        }
        try resource("app.js").write(to: dir.appendingPathComponent("app.js"))
        try resource("style.css").write(to: dir.appendingPathComponent("style.css"))
        let page = String(decoding: try resource("index.html"), as: UTF8.self)
        var names: [String] = []
        for (name, state) in ScreenSamples.states {
            let html = page
                .replacingOccurrences(of: "href=\"/style.css\"", with: "href=\"style.css\"")
                .replacingOccurrences(of: "src=\"/app.js\"", with: "src=\"app.js\"")
                .replacingOccurrences(of: "/*INITIAL_STATE*/null", with: state.inlineScriptLiteral + "; window.PREVIEW = true"
                                      + (name == "township-legal-aid-confirm" ? "; window.PREVIEW_MATTER = \"labor_remuneration\"" : ""))
            try Data(html.utf8).write(to: dir.appendingPathComponent("\(name).html"))
            names.append(name)
        }
        return names
    }
}
