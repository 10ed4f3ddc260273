import Foundation

// The floor of a daemon at rest (issue 11): the Swift runtime and Foundation loaded (a date
// formatted, a JSON object read, a file looked at, as any daemon does at start-up), then
// nothing but waiting on a signal. Its resident memory and wake-ups are what kioskd's
// are measured against.
//   rest-floor          waits in pause(): the runtime's floor
//   rest-floor --async  waits in a task of Swift concurrency (as kioskd, an async daemon,
//                       does): on Linux the default executor runs on libdispatch's
//                       workqueue, whose pool monitor (a timer on the manager queue, once a
//                       second, for as long as the process lives: libdispatch
//                       src/event/workqueue.c, _dispatch_workq_init_once) wakes it every
//                       second.
let formatted = ISO8601DateFormatter().string(from: Date())
let object = try? JSONSerialization.jsonObject(with: Data(#"{"ready":true}"#.utf8))
_ = FileManager.default.fileExists(atPath: "/proc/self/status")
print("rest-floor ready \(formatted) \(object != nil)")
fflush(nil)
signal(SIGTERM) { _ in exit(0) }
if CommandLine.arguments.contains("--async") {
    // Detached: a task of top-level code would wait for the main actor, which pause() never gives up.
    Task.detached { await withUnsafeContinuation { (_: UnsafeContinuation<Void, Never>) in } }
}
while true { pause() }
