//! What the remote stores share: the small runtime their async clients run on, and the
//! bridge from the blocking workers that call storage to it.
//!
//! Storage calls come from blocking workers (see [`super::storage`]); the S3 and SFTP
//! clients are async. They run on a runtime of their own rather than the daemon's, so a
//! storage call never waits for a busy daemon runtime, and the CLI's one-off runtimes need
//! not live as long as a connection does.

use std::sync::LazyLock;

/// The runtime remote storage runs on: two threads, started on first use, never stopped.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("holdfast-remote")
        .enable_all()
        .build()
        .expect("starting the remote storage runtime")
});

/// Runs `f` to completion on the remote runtime. Storage is called from blocking
/// workers; a call from inside an async task (which must not block its thread on another
/// runtime) is carried out on a thread of its own.
pub(crate) fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| RUNTIME.block_on(f))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        RUNTIME.block_on(f)
    }
}
