//! Heavy archive work (reading, compressing, hashing; verifying and copying an archive
//! after its run) runs on threads of its own at a lower CPU priority, so that a backup
//! never starves the services around it, nor holdfast's own API and reconcile loop. zstd's
//! worker threads are created from these threads and inherit their priority (a test
//! checks it).
//!
//! Why a nice value per thread rather than other ways: on 2 cores, a zstd -19 backup keeps
//! both busy for minutes, and the API's tokio workers need only a few percent of a core to
//! answer 5,000 requests/s. At nice 10 (weight 110 against 1024) a woken API worker
//! runs ahead of compression; the backup still gets every cycle nobody else wants, so
//! it is no slower on an idle machine. An API on a runtime of its own would not change
//! who wins the CPU, and `SCHED_IDLE` would starve backups on a busy host. Nice values
//! only weigh threads against each other within one scheduling group (a cgroup, or the
//! session's autogroup): there the API comes first, while other groups' load still
//! delays the whole daemon. `bench/api.sh` measures the API during a backup.

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

    /// The nice value of every thread of this process whose name is `name`, read from
    /// `/proc/self/task/*/stat` (the 19th field; the name, in parentheses, may hold spaces).
    fn nice_of_threads_named(name: &str) -> Vec<i64> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
                continue; // the thread ended meanwhile
            };
            let (head, tail) = stat.rsplit_once(')').unwrap();
            if head.split_once('(').unwrap().1 != name {
                continue;
            }
            let fields: Vec<&str> = tail.split_whitespace().collect();
            found.push(fields[16].parse().unwrap());
        }
        found
    }

    #[tokio::test]
    async fn the_threads_zstd_starts_to_compress_inherit_the_archive_threads_priority() {
        // A name no other test uses; threads zstd creates carry their creator's name.
        let name = "hf-nice-zstd";
        let (own, workers) = spawn(name, move || {
            // Lower still, to a value the whole test process cannot have by chance (when
            // it runs under `nice -n 10`, every thread is at NICE already).
            // SAFETY: as above; raising one's own nice value never needs a privilege.
            let own = unsafe {
                let tid = libc::gettid() as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, NICE + 3);
                libc::getpriority(libc::PRIO_PROCESS, tid)
            };
            let mut enc = zstd::stream::write::Encoder::new(std::io::sink(), 3).unwrap();
            enc.multithread(2).unwrap();
            // The first write creates zstd's pool of workers, before any job is handed out.
            std::io::Write::write_all(&mut enc, &[7; 4 << 20]).unwrap();
            let workers = nice_of_threads_named(name);
            enc.finish().unwrap();
            (own, workers)
        })
        .await
        .unwrap();
        assert_eq!(own, NICE + 3);
        // The calling thread and zstd's two workers.
        assert!(workers.len() >= 3, "threads named {name}: {workers:?}");
        assert!(workers.iter().all(|&n| n == i64::from(own)), "{workers:?}");
    }
}
