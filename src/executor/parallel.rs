//! Several sources of a run archived at once, up to `--archive-parallelism`.
//!
//! Each volume and bind mount is an artifact of its own (`volumes/<name>.tar.zst`), so
//! sources archived at once never share an output stream: each is read, compressed and
//! written on threads of its own, exactly as it would be alone, and the archive holds the
//! same artifacts with the same bytes whatever the parallelism. The results are taken in
//! plan order, so the manifest lists the artifacts in the same order too. Stacks of many
//! small volumes gain most: one small source cannot keep the cores busy (walking,
//! opening and fsyncing files, zstd's start per artifact), several can.
//!
//! Memory: the cores are shared out, not multiplied. Each source compresses with the
//! core count divided by the sources running at once as its zstd workers (at least
//! one), and zstd keeps a few jobs in memory per worker, so a run holds about what one
//! source alone held, plus each source's own write buffer (1 MiB, or an upload's parts
//! for a remote repository).

use std::future::Future;

use futures_util::StreamExt;

/// The default of `--archive-parallelism`: the number of cores.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The zstd workers each of `running` sources archived at once gets: the cores shared out,
/// at least one each.
pub(super) fn workers_each(running: usize) -> usize {
    (default_parallelism() / running.max(1)).max(1)
}

/// Runs `jobs`, at most `limit` at once (at least one), and returns their results in the
/// order of `jobs`, whatever order they finish in.
pub(super) async fn in_order<T>(jobs: Vec<impl Future<Output = T>>, limit: usize) -> Vec<T> {
    futures_util::stream::iter(jobs)
        .buffered(limit.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;

    /// Four jobs that each take 150 ms on a thread of their own (as archive work does)
    /// and record when they started and ended; the later ones end first.
    async fn timed(limit: usize) -> Vec<(usize, Instant, Instant)> {
        let zero = Instant::now();
        let jobs = (0..4).map(|i| async move {
            let start = Instant::now();
            let took = Duration::from_millis(150 + 20 * (3 - i as u64));
            crate::executor::background::spawn("test", move || std::thread::sleep(took))
                .await
                .unwrap();
            (i, start, Instant::now())
        });
        let results = in_order(jobs.collect(), limit).await;
        assert!(results.iter().all(|(_, s, _)| *s >= zero));
        results
    }

    /// Whether two of the jobs ran at the same time.
    fn overlapping(results: &[(usize, Instant, Instant)]) -> bool {
        results.iter().any(|(i, s1, e1)| {
            results
                .iter()
                .any(|(j, s2, e2)| i != j && s1 < e2 && s2 < e1)
        })
    }

    #[tokio::test]
    async fn jobs_overlap_up_to_the_limit_and_come_back_in_order() {
        let results = timed(4).await;
        let order: Vec<usize> = results.iter().map(|r| r.0).collect();
        assert_eq!(
            order,
            [0, 1, 2, 3],
            "in the order given, not as they finished"
        );
        assert!(overlapping(&results), "four at once ran one by one");
        // All four started before the first one ended.
        let first_end = results.iter().map(|r| r.2).min().unwrap();
        assert!(results.iter().all(|r| r.1 < first_end));

        let results = timed(1).await;
        assert!(!overlapping(&results), "one at a time overlapped");
        let order: Vec<usize> = results.iter().map(|r| r.0).collect();
        assert_eq!(order, [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn no_more_than_the_limit_run_at_once() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs = (0..6).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                running.fetch_sub(1, SeqCst);
            }
        });
        in_order(jobs.collect(), 2).await;
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn the_cores_are_shared_out_among_the_sources_running() {
        let cores = default_parallelism();
        assert_eq!(workers_each(1), cores);
        assert_eq!(workers_each(0), cores);
        assert_eq!(workers_each(cores), 1);
        assert_eq!(workers_each(cores * 4), 1, "at least one each");
    }
}
