//! Heavy archive work (reading, compressing, hashing) runs on threads of its own at a lower
//! CPU priority, so that a backup never starves the services around it, nor holdfast's own
//! API and reconcile loop. zstd's worker threads are created from these threads and
//! inherit their priority.

use std::future::Future;

use super::error::WorkerError;

/// The nice value of archive threads: well below everything at the default 0, yet far
/// from idle-only, so a backup still finishes on a busy host.
const NICE: libc::c_int = 10;

/// Starts `work` on a new thread at [`NICE`] at once; the future yields its result, or an
/// error if the thread could not start or panicked.
pub fn spawn<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T, WorkerError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority();
            // The receiver may be gone (the run was cancelled); the work is done anyway.
            let _ = tx.send(work());
        });
    async move {
        started.map_err(WorkerError::Start)?;
        rx.await.map_err(|_| WorkerError::Panicked)
    }
}

/// Lowers the calling thread's CPU priority. On Linux the nice value belongs to a
/// thread, not the process. Failing to lower it is harmless: the work just runs at the
/// default priority.
fn lower_priority() {
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_a_lower_priority_and_returns_its_result() {
        let nice = spawn("test", || {
            // SAFETY: as above; getpriority of the calling thread.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .await
        .unwrap();
        assert_eq!(nice, NICE);
        let failed = spawn("test", || panic!("boom")).await.unwrap_err();
        assert!(failed.to_string().contains("panicked"), "{failed}");
        assert!(!failed.is_transient());
    }
}
