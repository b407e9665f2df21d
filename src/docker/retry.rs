//! Trying a Docker call again when it failed for a reason that passes: a connection reset
//! while the engine restarts, a 5xx while it is busy, a socket briefly gone.
//!
//! Only calls that are safe to repeat go through here: reads (inspect, list, archive
//! downloads before their first byte), creating an exec (an unused one costs nothing), and
//! stop and start, which Docker answers with 304 when the container is already where it
//! was asked to go. Starting an exec is never repeated: the command would run twice.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::engine::DockerError;

/// How often and for how long a call is tried: waits that double from `first` up to
/// `longest`, at most `attempts` calls, and no wait that would end after `budget` from the
/// first call.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub longest: Duration,
    pub attempts: u32,
    pub budget: Duration,
}

/// What every repeatable Docker call gets: waits of 0.25, 0.5, 1, 2, 4 and 8 s, so a
/// call that keeps failing gives up after seven tries and about 16 s of waiting. A call
/// that itself took longer than the budget (a stop that ran into its timeout) is not
/// tried again.
pub const DOCKER: Backoff = Backoff {
    first: Duration::from_millis(250),
    longest: Duration::from_secs(8),
    attempts: 7,
    budget: Duration::from_secs(20),
};

/// Calls `call` until it succeeds, fails for good, or `backoff` says to stop. The error of
/// a call that was tried more than once says how often and for how long.
pub async fn retry<T, F, Fut>(backoff: &Backoff, mut call: F) -> Result<T, DockerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DockerError>>,
{
    let began = Instant::now();
    let mut attempt = 1;
    let mut wait = backoff.first;
    loop {
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let elapsed = began.elapsed();
        if !error.is_transient() {
            return Err(gave_up(error, attempt, elapsed));
        }
        if attempt >= backoff.attempts || elapsed + wait > backoff.budget {
            return Err(gave_up(error, attempt, elapsed));
        }
        warn!(
            operation = error.operation(),
            reason = error.reason(),
            attempt,
            "{error}; trying again in {}",
            crate::logging::human_seconds(wait.as_secs_f64())
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
        wait = (wait * 2).min(backoff.longest);
    }
}

fn gave_up(error: DockerError, attempts: u32, elapsed: Duration) -> DockerError {
    if attempts == 1 {
        return error;
    }
    DockerError::Retried {
        attempts,
        elapsed,
        last: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn answered(status_code: u16) -> DockerError {
        DockerError::On {
            operation: "stopping container",
            target: "db".into(),
            source: Box::new(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: "busy".into(),
            }),
        }
    }

    /// A call that fails with `status` for its first `failures` calls, then succeeds.
    fn flaky(
        calls: &Cell<u32>,
        failures: u32,
        status: u16,
    ) -> impl Future<Output = Result<u32, DockerError>> {
        let n = calls.get() + 1;
        calls.set(n);
        async move {
            if n <= failures {
                Err(answered(status))
            } else {
                Ok(n)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_tried_again_until_it_passes() {
        let calls = Cell::new(0);
        let began = Instant::now();
        let got = retry(&DOCKER, || flaky(&calls, 3, 503)).await.unwrap();
        assert_eq!(got, 4);
        assert_eq!(calls.get(), 4);
        // 0.25 + 0.5 + 1 s of waiting.
        assert_eq!(began.elapsed(), Duration::from_millis(1750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_tried_again() {
        for status in [404, 409, 400] {
            let calls = Cell::new(0);
            let began = Instant::now();
            let e = retry(&DOCKER, || flaky(&calls, 10, status))
                .await
                .unwrap_err();
            assert_eq!(calls.get(), 1, "{status}");
            assert_eq!(began.elapsed(), Duration::ZERO);
            assert!(matches!(e, DockerError::On { .. }), "{e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_gives_up_within_the_budget_and_says_so() {
        let calls = Cell::new(0);
        let began = Instant::now();
        let e = retry(&DOCKER, || flaky(&calls, u32::MAX, 503))
            .await
            .unwrap_err();
        assert_eq!(calls.get(), DOCKER.attempts);
        // 0.25 + 0.5 + 1 + 2 + 4 + 8 s of waiting.
        assert_eq!(began.elapsed(), Duration::from_millis(15_750));
        assert!(began.elapsed() <= DOCKER.budget);
        assert_eq!(
            e.to_string(),
            "stopping container db: Docker responded with status code 503: busy \
             (tried 7 times over 15.8 s)"
        );
        assert!(e.is_transient());
        assert_eq!(e.reason(), "engine_error");
        assert_eq!(e.operation(), "stopping container");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_the_time_whatever_the_attempts() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            longest: Duration::from_secs(1),
            attempts: 100,
            budget: Duration::from_secs(5),
        };
        let calls = Cell::new(0);
        let began = Instant::now();
        // Each call takes 2 s before it fails.
        let e = retry(&backoff, || {
            let call = flaky(&calls, u32::MAX, 502);
            async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                call.await
            }
        })
        .await
        .unwrap_err();
        // Calls end at 2, 5 s; a third would begin after the budget.
        assert_eq!(calls.get(), 2);
        assert_eq!(began.elapsed(), Duration::from_secs(5));
        assert!(matches!(e, DockerError::Retried { attempts: 2, .. }), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_longer_than_the_budget_is_not_tried_again() {
        let calls = Cell::new(0);
        let e = retry(&DOCKER, || {
            let call = flaky(&calls, u32::MAX, 503);
            async move {
                tokio::time::sleep(Duration::from_secs(90)).await;
                call.await
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert!(matches!(e, DockerError::On { .. }), "{e}");
    }
}
