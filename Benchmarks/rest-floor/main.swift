import Foundation

// The floor of a daemon at rest (issue 11): the Swift runtime and Foundation loaded (a date
// formatted, a JSON object read, a file looked at, as any daemon does at start-up), then
// nothing but waiting on a signal. Its resident memory and wake-ups are what kioskd's
// are measured against.
let formatted = ISO8601DateFormatter().string(from: Date())
let object = try? JSONSerialization.jsonObject(with: Data(#"{"ready":true}"#.utf8))
_ = FileManager.default.fileExists(atPath: "/proc/self/status")
print("rest-floor ready \(formatted) \(object != nil)")
fflush(nil)
signal(SIGTERM) { _ in exit(0) }
while true { pause() }
