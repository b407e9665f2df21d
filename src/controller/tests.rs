//! The loop without Docker: a fake runner, real spec and state folders, and tokio's
//! paused clock driving the controller's own, so schedules, debounce and shutdown
//! timeouts are tested at their times without waiting for them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::clock::{Clock, TokioClock};
use super::runner::{BoxFuture, Runner};
use super::{Controller, Options};
use crate::executor::{BackupRequest, RunOutcome};
use crate::hub::{Event, Hub};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::RestoreRequest;
use crate::spec::common::Phase;
use crate::state::StateDb;

/// How the fake's runs behave.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Succeed after this long.
    FinishAfter(Duration),
    /// Never end by themselves.
    Hang,
}

/// Records each run it is asked for, with the controller's clock at that moment.
struct FakeRunner {
    clock: Arc<dyn Clock>,
    behaviour: Behaviour,
    calls: Mutex<Vec<(String, DateTime<Utc>)>>,
    /// Runs whose future was dropped before it ended.
    cancelled: Arc<AtomicUsize>,
    replays: AtomicUsize,
    /// The progress each run was handed: what its threads would ask whether to stop.
    progress: Mutex<Vec<Arc<dyn Progress>>>,
    /// Whether each opening of the named repositories was allowed to clean them.
    cleans: Mutex<Vec<bool>>,
}

/// Counts a cancellation when a run's future is dropped unfinished.
struct OnDrop(Option<Arc<AtomicUsize>>);

impl OnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl FakeRunner {
    fn new(clock: Arc<dyn Clock>, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(FakeRunner {
            clock,
            behaviour,
            calls: Mutex::new(Vec::new()),
            cancelled: Arc::new(AtomicUsize::new(0)),
            replays: AtomicUsize::new(0),
            progress: Mutex::new(Vec::new()),
            cleans: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<(String, DateTime<Utc>)> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self, name: &str) -> usize {
        self.calls().iter().filter(|(n, _)| n == name).count()
    }

    fn work(&self, name: &str) -> BoxFuture<RunOutcome> {
        let start_time = self.clock.now();
        self.calls
            .lock()
            .unwrap()
            .push((name.to_string(), start_time));
        let behaviour = self.behaviour;
        let guard = OnDrop(Some(self.cancelled.clone()));
        let clock = self.clock.clone();
        let run_id = format!("{name}-{}", start_time.timestamp());
        Box::pin(async move {
            match behaviour {
                Behaviour::FinishAfter(d) => tokio::time::sleep(d).await,
                Behaviour::Hang => std::future::pending::<()>().await,
            }
            guard.disarm();
            RunOutcome {
                run_id,
                archive_id: None,
                phase: Phase::Succeeded,
                dry_run: false,
                start_time,
                completion_time: clock.now(),
                bytes: 0,
                source_bytes: 0,
                artifacts: 0,
                downtime: Default::default(),
                errors: vec![],
                warnings: vec![],
                committed: false,
                plan: None,
                verified: None,
                repository: crate::spec::repository::DEFAULT_REPOSITORY.to_string(),
                copies: Vec::new(),
            }
        })
    }
}

impl Runner for FakeRunner {
    fn backup(
        &self,
        request: BackupRequest,
        _verify_after: bool,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome> {
        self.progress.lock().unwrap().push(progress);
        self.work(&request.name)
    }

    fn restore(
        &self,
        request: RestoreRequest,
        _progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome> {
        self.work(&request.name)
    }

    fn action(
        &self,
        request: crate::actions::ActionRequest,
        _progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome> {
        self.work(&request.name)
    }

    fn replay_journal(&self) -> BoxFuture<Result<Vec<String>, String>> {
        self.replays.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(vec![]) })
    }

    fn prune_named(
        &self,
        _policy: crate::spec::policy::BackupPolicySpec,
        _group: String,
    ) -> BoxFuture<()> {
        Box::pin(async {})
    }

    fn repositories(
        &self,
        specs: Vec<(String, crate::spec::repository::RepositorySpec)>,
        clean: bool,
    ) -> BoxFuture<super::runner::Probes> {
        self.cleans.lock().unwrap().push(clean);
        Box::pin(async move {
            specs
                .into_iter()
                .map(|(name, _)| {
                    let probe = super::runner::Probe {
                        at: chrono::Utc::now(),
                        result: Ok((0, 0)),
                    };
                    (name, probe)
                })
                .collect()
        })
    }
}

/// A controller running on its own task over temporary folders.
struct Loop {
    _dir: tempfile::TempDir,
    specs: PathBuf,
    state_dir: PathBuf,
    runner: Arc<FakeRunner>,
    hub: Arc<Hub>,
    spec_tx: mpsc::UnboundedSender<()>,
    signal_tx: mpsc::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

struct Setup {
    specs: &'static str,
    start: DateTime<Utc>,
    behaviour: Behaviour,
    shutdown_timeout: Duration,
}

impl Setup {
    fn new(specs: &'static str) -> Self {
        Setup {
            specs,
            start: at(2, 58, 30),
            behaviour: Behaviour::FinishAfter(Duration::from_secs(1)),
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    fn start(self) -> Loop {
        let dir = tempfile::tempdir().unwrap();
        start_in(dir, self)
    }
}

fn start_in(dir: tempfile::TempDir, setup: Setup) -> Loop {
    let specs = dir.path().join("specs");
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&specs).unwrap();
    std::fs::write(specs.join("objects.yaml"), setup.specs).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(setup.start));
    let runner = FakeRunner::new(clock.clone(), setup.behaviour);
    let hub = Arc::new(Hub::new());
    let state = Arc::new(StateDb::open(&state_dir).unwrap());
    let options = Options {
        specs: specs.clone(),
        repository: dir.path().join("repo/h"),
        status_dir: None,
        max_concurrent: 1,
        shutdown_timeout: setup.shutdown_timeout,
        resync: Duration::from_secs(60),
        logs: state_dir.join("logs"),
        history_limit: 0,
        host: "test-host".into(),
        host_labels: [("role".to_string(), "vps".to_string())].into(),
        external_url: None,
    };
    let controller = Controller::new(
        options,
        runner.clone(),
        Repository::local(dir.path().join("repo"), "h"),
        state,
        hub.clone(),
        clock,
    );
    let (spec_tx, spec_rx) = mpsc::unbounded_channel();
    let (signal_tx, signal_rx) = mpsc::channel(4);
    let task = tokio::spawn(controller.run(spec_rx, signal_rx));
    Loop {
        _dir: dir,
        specs,
        state_dir,
        runner,
        hub,
        spec_tx,
        signal_tx,
        task,
    }
}

impl Loop {
    /// Stops the controller and hands its folders back.
    async fn stop(self) -> (tempfile::TempDir, Arc<FakeRunner>) {
        self.signal_tx.send(()).await.unwrap();
        self.task.await.unwrap().unwrap();
        (self._dir, self.runner)
    }
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).unwrap()
}

/// Lets virtual time pass in small steps, so the loop's tasks get to run in between.
async fn pass(d: Duration) {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        let now = step.min(left);
        tokio::time::sleep(now).await;
        left -= now;
    }
}

const NIGHTLY: &str = "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata: {name: nightly}
spec:
  schedule: '0 3 * * *'
  targets: {stacks: [web]}
";

const ONCE: &str = "apiVersion: holdfast.dev/v1alpha1
kind: Archive
metadata: {name: once}
spec: {targets: {volumes: [data]}}
";

const TWO_ARCHIVES: &str = "apiVersion: holdfast.dev/v1alpha1
kind: Archive
metadata: {name: once}
spec: {targets: {volumes: [data]}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Archive
metadata: {name: second}
spec: {targets: {volumes: [other]}}
";

const REQUESTED: &str = "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: monthly
  annotations: {holdfast.dev/requested-at: '2026-11-25T02:58:00Z'}
spec:
  schedule: '0 3 1 1 *'
  targets: {stacks: [web]}
";

#[tokio::test(start_paused = true)]
async fn a_schedule_fires_at_its_time_and_not_before() {
    let lp = Setup::new(NIGHTLY).start();
    pass(Duration::from_secs(60)).await;
    assert!(lp.runner.calls().is_empty(), "nothing is due at 02:59:30");
    pass(Duration::from_secs(60)).await;
    let calls = lp.runner.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let late = calls[0].1 - at(3, 0, 0);
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::milliseconds(500),
        "ran at {}",
        calls[0].1
    );
    lp.stop().await;
}

#[tokio::test(start_paused = true)]
async fn requested_at_runs_once_across_passes_and_restarts() {
    let lp = Setup::new(REQUESTED).start();
    pass(Duration::from_secs(5)).await;
    assert_eq!(lp.runner.count("monthly"), 1);
    // Edits, resyncs and time passing ask for nothing new.
    for _ in 0..3 {
        lp.spec_tx.send(()).unwrap();
        pass(Duration::from_secs(70)).await;
    }
    assert_eq!(lp.runner.count("monthly"), 1);
    let (dir, _) = lp.stop().await;
    // A restart on the same state remembers the value was handled.
    let again = start_in(dir, Setup::new(REQUESTED));
    pass(Duration::from_secs(10)).await;
    assert_eq!(again.runner.count("monthly"), 0);
    again.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_run_that_ends_in_time() {
    let lp = Setup::new(ONCE).start();
    let mut setup_done = false;
    for _ in 0..20 {
        if lp.runner.count("once") == 1 {
            setup_done = true;
            break;
        }
        pass(Duration::from_millis(100)).await;
    }
    assert!(setup_done, "the Archive ran");
    let begun = tokio::time::Instant::now();
    let runner = lp.runner.clone();
    lp.stop().await;
    let took = begun.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "waited {took:?} for a 1 s run"
    );
    assert_eq!(runner.cancelled.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_a_run_after_the_timeout_and_replays_the_journal() {
    let mut setup = Setup::new(ONCE);
    setup.behaviour = Behaviour::Hang;
    setup.shutdown_timeout = Duration::from_secs(30);
    let lp = setup.start();
    pass(Duration::from_secs(2)).await;
    assert_eq!(lp.runner.count("once"), 1);
    let replays_before = lp.runner.replays.load(Ordering::SeqCst);
    let begun = tokio::time::Instant::now();
    let runner = lp.runner.clone();
    lp.stop().await;
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(31),
        "stopped after {took:?}"
    );
    assert_eq!(
        runner.cancelled.load(Ordering::SeqCst),
        1,
        "the run was dropped"
    );
    assert!(
        runner.progress.lock().unwrap()[0].cancelled(),
        "the run's threads are told to stop"
    );
    assert_eq!(
        runner.replays.load(Ordering::SeqCst),
        replays_before + 1,
        "what the run stopped is started again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_file_events_delays_neither_a_runs_end_nor_a_signal() {
    let mut setup = Setup::new(ONCE);
    setup.behaviour = Behaviour::FinishAfter(Duration::from_secs(2));
    let lp = setup.start();
    let mut events = lp.hub.subscribe();
    pass(Duration::from_millis(200)).await;
    assert_eq!(lp.runner.count("once"), 1);
    let started = tokio::time::Instant::now();
    // A file written every 50 ms for 20 s.
    let tx = lp.spec_tx.clone();
    let burst = tokio::spawn(async move {
        for _ in 0..400 {
            if tx.send(()).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let finished = loop {
        match events.recv().await {
            Ok(Event::RunFinished { name, .. }) if name == "once" => break started.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        finished < Duration::from_secs(2) + super::watch::MAX_DEBOUNCE + Duration::from_millis(500),
        "the run's end was seen {finished:?} after it began"
    );
    pass(Duration::from_secs(3)).await;
    let signalled = tokio::time::Instant::now();
    lp.signal_tx.send(()).await.unwrap();
    lp.task.await.unwrap().unwrap();
    assert!(
        signalled.elapsed() < super::watch::MAX_DEBOUNCE + Duration::from_millis(500),
        "the stop took {:?}",
        signalled.elapsed()
    );
    burst.abort();
}

/// Makes the state database fail every read of what the controller remembers, as a
/// damaged or busy database would, while writes to existing rows still succeed.
fn break_memory(state_dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(state_dir.join("holdfast.db")).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER unreadable BEFORE INSERT ON objects
         BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
    )
    .unwrap();
}

fn repair_memory(state_dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(state_dir.join("holdfast.db")).unwrap();
    conn.execute_batch("DROP TRIGGER unreadable").unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_cannot_read_its_memory_starts_nothing_and_is_retried() {
    // A first daemon handles the Archive `once`.
    let lp = Setup::new(ONCE).start();
    pass(Duration::from_secs(3)).await;
    assert_eq!(lp.runner.count("once"), 1);
    let state_dir = lp.state_dir.clone();
    let specs = lp.specs.clone();
    let (dir, _) = lp.stop().await;
    std::fs::write(specs.join("objects.yaml"), TWO_ARCHIVES).unwrap();

    // The next one starts while the state cannot be read: neither the handled Archive
    // nor the new one runs, however long it lasts.
    break_memory(&state_dir);
    let lp = start_in(dir, Setup::new(TWO_ARCHIVES));
    pass(Duration::from_secs(90)).await;
    assert!(lp.runner.calls().is_empty(), "{:?}", lp.runner.calls());

    // Once it can be read again, a retry (no file event needed) runs the new Archive
    // only.
    repair_memory(&state_dir);
    pass(super::RETRY_MAX + Duration::from_secs(5)).await;
    assert_eq!(lp.runner.count("second"), 1);
    assert_eq!(lp.runner.count("once"), 0);
    lp.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_handled_record_cannot_be_written_does_not_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the repository's records folder belongs: nothing can be written there.
    let records = dir.path().join("repo/h/.holdfast");
    std::fs::create_dir_all(records.parent().unwrap()).unwrap();
    std::fs::write(&records, b"not a folder").unwrap();
    let lp = start_in(dir, Setup::new(ONCE));
    pass(Duration::from_secs(5)).await;
    assert!(lp.runner.calls().is_empty(), "{:?}", lp.runner.calls());
    let status = std::fs::read_to_string(lp.specs.join("objects.status.yaml")).unwrap();
    assert!(
        status.contains("reason: NotRecorded") && status.contains(".holdfast"),
        "{status}"
    );
    // Once it can be written, the run starts without any file event.
    std::fs::remove_file(&records).unwrap();
    pass(Duration::from_secs(15)).await;
    assert_eq!(lp.runner.count("once"), 1);
    let (dir, _) = lp.stop().await;
    let record = std::fs::read_to_string(dir.path().join("repo/h/.holdfast/handled.json")).unwrap();
    assert!(record.contains("\"name\": \"once\""), "{record}");
}

#[tokio::test(start_paused = true)]
async fn a_run_in_progress_is_named_in_words_in_its_status() {
    let mut setup = Setup::new(REQUESTED);
    setup.behaviour = Behaviour::Hang;
    setup.shutdown_timeout = Duration::from_secs(1);
    let lp = setup.start();
    pass(Duration::from_secs(3)).await;
    assert_eq!(lp.runner.count("monthly"), 1);
    let status = std::fs::read_to_string(lp.specs.join("objects.status.yaml")).unwrap();
    assert!(
        status.contains(
            "message: a requested run started at 2026-11-25 02:58:30 UTC is in progress\n"
        ),
        "{status}"
    );
    lp.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_specs_folder_moved_away_keeps_the_last_good_view() {
    let lp = Setup::new(NIGHTLY).start();
    pass(Duration::from_secs(5)).await;
    // The folder goes away and stays away past the schedule: what was read last still
    // holds, so the nightly run happens on time.
    let moved = lp.specs.with_extension("moved");
    std::fs::rename(&lp.specs, &moved).unwrap();
    lp.spec_tx.send(()).unwrap();
    pass(Duration::from_secs(120)).await;
    assert_eq!(lp.runner.count("nightly"), 1, "{:?}", lp.runner.calls());
    assert!(!lp.specs.exists(), "nothing made the specs folder again");
    let metrics = lp.hub.metrics.encode();
    assert!(metrics.contains("holdfast_specs_unreadable 1"), "{metrics}");
    // Back, it is read again without a file event.
    std::fs::rename(&moved, &lp.specs).unwrap();
    pass(Duration::from_secs(40)).await;
    let metrics = lp.hub.metrics.encode();
    assert!(metrics.contains("holdfast_specs_unreadable 0"), "{metrics}");
    lp.stop().await;
}

const REPOSITORIES: &str = "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata:
  name: usb
  annotations: {holdfast.dev/requested-at: '2026-11-25T02:58:00Z'}
spec:
  storage: {local: {path: /mnt/usb}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {name: broken}
spec:
  storage: {local: {path: /mnt/usb}, s3: {endpoint: 's3.example', bucket: b, accessKeyId: {fromEnv: A}, secretAccessKey: {fromEnv: B}}}
";

#[tokio::test(start_paused = true)]
async fn a_repository_is_never_run_and_its_status_says_whether_it_is_valid() {
    let lp = Setup::new(REPOSITORIES).start();
    pass(Duration::from_secs(120)).await;
    assert!(lp.runner.calls().is_empty(), "{:?}", lp.runner.calls());
    let status = std::fs::read_to_string(lp.specs.join("objects.status.yaml")).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = status
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let of = |name: &str| {
        docs.iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    let usb = &of("usb")["status"];
    assert!(usb["observedGeneration"].as_str().is_some(), "{status}");
    let ready = &usb["conditions"][0];
    assert_eq!(ready["type"].as_str(), Some("Ready"), "{status}");
    assert_eq!(ready["status"].as_str(), Some("True"), "{status}");
    // The fake runner's probe finds it reachable and empty.
    assert_eq!(ready["reason"].as_str(), Some("Reachable"), "{status}");
    assert_eq!(
        ready["message"].as_str(),
        Some("reachable (local /mnt/usb)")
    );
    assert!(usb["lastValidated"].as_str().is_some(), "{status}");
    assert_eq!(usb["archives"]["count"].as_u64(), Some(0), "{status}");
    assert!(usb.get("lastRun").is_none(), "{status}");
    let broken = serde_yaml_ng::to_string(&of("broken")["status"]).unwrap();
    assert!(broken.contains("Stalled"), "{broken}");
    assert!(
        broken.contains("set exactly one of s3, sftp or local"),
        "{broken}"
    );
    lp.stop().await;
}

#[tokio::test(start_paused = true)]
async fn what_failed_uploads_left_is_cleared_only_while_no_run_writes() {
    let specs: &'static str = Box::leak(format!("{ONCE}---\n{REPOSITORIES}").into_boxed_str());
    let mut setup = Setup::new(specs);
    setup.behaviour = Behaviour::Hang;
    let lp = setup.start();
    pass(Duration::from_secs(2)).await;
    assert_eq!(lp.runner.count("once"), 1);
    // Resyncs come while the run hangs, as an upload in progress would.
    pass(Duration::from_secs(200)).await;
    let cleans = lp.runner.cleans.lock().unwrap().clone();
    assert!(cleans.len() >= 3, "{cleans:?}");
    assert!(cleans[0], "the start-up opening cleans: {cleans:?}");
    assert!(
        cleans[1..].iter().all(|c| !c),
        "a resync cleaned while a run was writing: {cleans:?}"
    );
}

/// Two requested policies, one for this host's role and one for another's, and a
/// Repository only the other host uses.
const FLEET: &str = "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: here
  annotations: {holdfast.dev/requested-at: '2026-11-25T02:58:00Z'}
spec:
  schedule: '0 3 1 1 *'
  targets: {stacks: [web]}
  hostSelector: {matchLabels: {role: vps}}
---
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: elsewhere
  annotations: {holdfast.dev/requested-at: '2026-11-25T02:58:00Z'}
spec:
  schedule: '* * * * *'
  targets: {stacks: [web]}
  retention: {keepLast: 1}
  output: {repository: nas-disk}
  hostSelector: {matchLabels: {role: nas}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata:
  name: nas-disk
spec:
  storage: {local: {path: /srv/nas-disk}}
  hostSelector: {matchLabels: {role: nas}}
";

#[tokio::test(start_paused = true)]
async fn an_object_of_another_host_never_runs_and_says_so_without_an_error() {
    let lp = Setup::new(FLEET).start();
    pass(Duration::from_secs(150)).await;
    assert_eq!(lp.runner.count("here"), 1);
    assert_eq!(lp.runner.count("elsewhere"), 0, "{:?}", lp.runner.calls());
    let status = std::fs::read_to_string(lp.specs.join("objects.status.yaml")).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = status
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let ready = |name: &str| {
        let doc = docs
            .iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no status for {name}: {status}"));
        let conditions = doc["status"]["conditions"].as_sequence().unwrap();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        (
            ready["status"].as_str().unwrap().to_string(),
            ready["reason"].as_str().unwrap().to_string(),
            ready["message"].as_str().unwrap().to_string(),
        )
    };
    for name in ["elsewhere", "nas-disk"] {
        let (value, reason, message) = ready(name);
        assert_eq!((value.as_str(), reason.as_str()), ("True", "NotSelected"));
        assert_eq!(
            message,
            "hostSelector {role: nas} does not match this host test-host \
             (labels: {role: vps})"
        );
    }
    assert!(
        !status.contains("nextScheduleTime: 2026-11-25T03:0"),
        "{status}"
    );
    lp.stop().await;
}
