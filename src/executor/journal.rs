//! Replaying the stop journal: starting again what an interrupted run (a crash, a
//! cancelled run, Ctrl-C on a one-off command) had stopped.
//!
//! An entry is forgotten only once its container was started again, by this replay or by
//! someone else after the stop began. A container that runs is not enough: Docker keeps a
//! container running for its whole stop timeout before it kills it, so a run cancelled
//! while Docker waits leaves a container that runs now and is dead a moment later. A stop
//! that may still be under way is waited out (Docker is asked to stop the container again
//! with what is left of the timeout, so it is over by the time Docker would have killed it
//! anyway), and the container is then started.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::{Executor, ExecutorError};
use crate::state::{StopEntry, StopPhase};

/// Slack for the time between journalling a stop and Docker beginning it, and for Docker
/// killing the container at the end of the timeout.
const STOP_SLACK: Duration = Duration::from_secs(5);

/// What replaying one journal entry does, from the entry and what Docker says now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// The container was started since the stop began, or the stop never took effect:
    /// forget the entry.
    Forget,
    /// The container is stopped: start it, then forget the entry.
    Start,
    /// The stop may still be under way: let it end within this time (Docker kills the
    /// container then), start the container, then forget the entry.
    FinishStop(Duration),
}

/// Decides what to do with `entry` for a container that `running` or not, last started at
/// `started_at`, at `now`.
pub(crate) fn decide(
    entry: &StopEntry,
    running: bool,
    started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Replay {
    if !running {
        return Replay::Start;
    }
    if started_since(entry, started_at) || entry.phase == StopPhase::Stopped {
        // Running again since the stop began (or since Docker said it stopped).
        return Replay::Forget;
    }
    let timeout = Duration::from_secs(entry.stop_timeout_seconds);
    let since = (now - entry.stopped_at).to_std().unwrap_or(Duration::ZERO);
    if since > timeout + STOP_SLACK {
        // Docker would have killed it by now had the stop reached it: the stop never took
        // effect (holdfast died before asking, or Docker refused), and it ran all along.
        return Replay::Forget;
    }
    Replay::FinishStop(timeout.saturating_sub(since))
}

/// Whether the container's process started after the journalled stop began: its start
/// time differs from the one Docker gave just before the stop (a comparison of Docker's
/// clock with itself), or, for entries without that time, is later than the stop.
fn started_since(entry: &StopEntry, started_at: Option<DateTime<Utc>>) -> bool {
    match (entry.container_started_at, started_at) {
        (_, None) => false,
        (Some(before), Some(now)) => now != before,
        (None, Some(now)) => now > entry.stopped_at,
    }
}

impl Executor {
    /// Starts every container an interrupted run left stopped, or is still stopping, then
    /// forgets it. Returns the names of the containers started. Every entry is tried; an
    /// entry that fails stays in the journal for the next replay, and the first failure is
    /// returned.
    pub async fn replay_journal(&self) -> Result<Vec<String>, ExecutorError> {
        let mut started = Vec::new();
        let mut first_failure = None;
        for entry in self.state.journal()? {
            match self.replay_entry(&entry).await {
                Ok(true) => started.push(entry.container_name.clone()),
                Ok(false) => {}
                Err(e) => {
                    error!(container = %entry.container_name, run = %entry.run_id, "starting again a container an interrupted run stopped: {e}");
                    first_failure.get_or_insert(e);
                }
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    /// Replays one entry; returns whether it started the container.
    async fn replay_entry(&self, entry: &StopEntry) -> Result<bool, ExecutorError> {
        let details = match self.engine.inspect(&entry.container_id).await {
            Ok(details) => details,
            // Removed since (e.g. `docker-compose down`): nothing left to start.
            Err(e) => {
                warn!(container = %entry.container_name, "journalled container is gone: {e}");
                self.state.journal_remove(&entry.container_id)?;
                return Ok(false);
            }
        };
        let decision = decide(entry, details.running, details.started_at, Utc::now());
        if let Replay::FinishStop(left) = decision {
            warn!(container = %entry.container_name, run = %entry.run_id, left_seconds = left.as_secs_f64(), "an interrupted run was stopping this container; letting the stop end before starting it again");
            self.engine.stop(&entry.container_id, left).await?;
            self.state.journal_stopped(&entry.container_id)?;
        }
        let start = decision != Replay::Forget;
        if start {
            warn!(container = %entry.container_name, run = %entry.run_id, "starting a container an interrupted run left stopped");
            self.engine.start(&entry.container_id).await?;
        } else {
            info!(container = %entry.container_name, run = %entry.run_id, "journalled container runs, started again since its stop or never stopped; forgetting it");
        }
        self.state.journal_remove(&entry.container_id)?;
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(phase: StopPhase) -> StopEntry {
        StopEntry {
            container_id: "c1".into(),
            container_name: "app".into(),
            run_id: "r1".into(),
            stopped_at: at("2026-01-01T03:00:00Z"),
            phase,
            stop_timeout_seconds: 40,
            container_started_at: Some(at("2026-01-01T02:00:00Z")),
        }
    }

    #[test]
    fn a_stopped_container_is_started() {
        for phase in [StopPhase::Stopping, StopPhase::Stopped] {
            let now = at("2026-01-01T04:00:00Z");
            assert_eq!(decide(&entry(phase), false, None, now), Replay::Start);
        }
    }

    #[test]
    fn a_container_in_its_stop_grace_period_is_waited_for_then_started() {
        let e = entry(StopPhase::Stopping);
        let before = Some(at("2026-01-01T02:00:00Z"));
        let now = at("2026-01-01T03:00:10Z");
        assert_eq!(
            decide(&e, true, before, now),
            Replay::FinishStop(Duration::from_secs(30))
        );
        // Past the timeout, within the slack: Docker is killing it now.
        let now = at("2026-01-01T03:00:42Z");
        assert_eq!(
            decide(&e, true, before, now),
            Replay::FinishStop(Duration::ZERO)
        );
    }

    #[test]
    fn a_container_started_since_the_stop_is_forgotten() {
        let later = Some(at("2026-01-01T03:00:20Z"));
        let now = at("2026-01-01T03:00:30Z");
        assert_eq!(
            decide(&entry(StopPhase::Stopping), true, later, now),
            Replay::Forget
        );
        assert_eq!(
            decide(&entry(StopPhase::Stopped), true, None, now),
            Replay::Forget
        );
    }

    #[test]
    fn a_restart_is_told_by_the_start_time_docker_gave_not_by_clocks() {
        let e = entry(StopPhase::Stopping);
        let now = at("2026-01-01T03:00:10Z");
        // Docker's clock is an hour ahead: the same start time is no restart...
        let ahead = StopEntry {
            container_started_at: Some(at("2026-01-01T04:00:00Z")),
            ..e.clone()
        };
        assert_eq!(
            decide(&ahead, true, ahead.container_started_at, now),
            Replay::FinishStop(Duration::from_secs(30))
        );
        // ...and a different one, even earlier than the stop by holdfast's clock, is.
        let other = Some(at("2026-01-01T02:30:00Z"));
        assert_eq!(decide(&e, true, other, now), Replay::Forget);
        // Without the time before the stop, a start after the stop counts.
        let unknown = StopEntry {
            container_started_at: None,
            ..e
        };
        assert_eq!(
            decide(&unknown, true, Some(at("2026-01-01T02:00:00Z")), now),
            Replay::FinishStop(Duration::from_secs(30))
        );
        assert_eq!(
            decide(&unknown, true, Some(at("2026-01-01T03:00:05Z")), now),
            Replay::Forget
        );
    }

    #[test]
    fn a_stop_that_never_took_effect_is_forgotten() {
        let before = Some(at("2026-01-01T02:00:00Z"));
        let now = at("2026-01-01T03:05:00Z");
        assert_eq!(
            decide(&entry(StopPhase::Stopping), true, before, now),
            Replay::Forget
        );
    }
}
