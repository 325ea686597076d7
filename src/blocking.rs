//! Blocking file work (an fsync, a synchronous broker round trip) called from async code.
//!
//! On a multi-threaded runtime the closure runs in place while the worker's other tasks move to
//! other threads (`tokio::task::block_in_place`), so an fsync does not stall the tasks queued
//! behind it (the replication stream, the endpoint). Elsewhere (a current-thread runtime, no
//! runtime, a blocking thread) it simply runs.

/// Runs `f`, letting the runtime's other tasks go on meanwhile where it can.
pub fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
