import ArgumentParser
import Foundation
import KioskCore

/// Issue 10: the screen's Mandarin voice prompts, made offline at install time.
struct Voice: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The screen's voice prompts: generate them with espeak-ng, or list what is said.",
        subcommands: [Generate.self, List.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a WAV for every prompt missing from STATE_DIR/voice with espeak-ng's Mandarin voice (recorded files already there are kept).")
        @OptionGroup var state: StateOptions
        @Flag(help: "Regenerate every prompt, replacing recorded files too.") var force = false
        @Option(help: "The espeak-ng program.") var espeak = "/usr/bin/espeak-ng"

        func run() throws {
            let dir = state.url.appendingPathComponent("voice")
            do {
                let made = try VoicePrompts.generate(into: dir, force: force, espeak: espeak)
                print("voice prompts in \(dir.path): \(made.count) generated, \(VoicePrompts.catalogue.count - made.count) kept")
            } catch {
                throw CommandFailure(message: "\(error)", status: .storage)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print every prompt's file name and words (for recording them by hand).")
        func run() throws {
            for (id, text) in VoicePrompts.catalogue.sorted(by: { $0.key < $1.key }) { print("\(id).wav\t\(text)") }
        }
    }
}
