import Foundation
import TestVectors
import Testing

/// The tests' wait helper (`withDeadline`): a wait that never ends fails the test that waits,
/// whether the wait heeds cancellation (a stream's next event) or not (a task that never ends).
@Suite struct DeadlineTests {
    @Test func aWaitThatNeverEndsThrowsAtItsDeadline() async {
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(seconds: 0.2, "event") {
                var it = stream.makeAsyncIterator()
                return await it.next()
            }
        }
        continuation.finish()
    }

    @Test func aWaitThatIgnoresCancellationIsLeftBehind() async {
        // Ignores cancellation, like a blocking call would, and can only end once the deadline
        // has passed (released below), so the outcome does not depend on how fast anything runs.
        let release = DispatchSemaphore(value: 0)
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(seconds: 0.2, "blocking call") { release.wait() }
        }
        release.signal()
    }

    @Test func anAnswerInTimeIsReturned() async throws {
        // A generous deadline: the answer is immediate, but at the start of a full run the test
        // pool's two threads are busy for tens of seconds, and what is checked here is that an
        // answer is returned, not how soon the pool gets to it.
        #expect(try await withDeadline(seconds: 120, "answer") { 42 } == 42)
        await #expect(throws: CancellationError.self) {
            try await withDeadline(seconds: 120, "work that fails") { throw CancellationError() }
        }
    }
}
