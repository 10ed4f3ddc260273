// Settlement: the kiosk side of the upload spec (docs/upload.md).
//
// - `BatchBody`: a batch's exact bytes (stored record texts joined verbatim) and its signature.
// - `BatchAnswer`: the hub's 200 answer, checked against the batch before anything is marked.
// - `Backoff`: exponential backoff with jitter, 1 s … 5 min.
// - `Uploader`: drains the queue (`drainOnce()`), or keeps draining (`run()`, woken by `notify()`).
