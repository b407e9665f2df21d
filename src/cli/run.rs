use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::controller::clock::SystemClock;
use crate::controller::{Controller, LiveRunner, Options, Runner};
use crate::docker::engine::Engine;
use crate::settings::Settings;
use crate::spec::HumanDuration;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Write status files into this folder (same relative paths) instead of beside the
    /// specs, for read-only spec checkouts.
    #[arg(long, env = "HOLDFAST_STATUS_DIR", value_name = "DIR")]
    status_dir: Option<PathBuf>,

    /// How many runs may go at once, across all policies.
    #[arg(
        long,
        env = "HOLDFAST_MAX_CONCURRENT_RUNS",
        default_value_t = 1,
        value_name = "N"
    )]
    max_concurrent_runs: usize,

    /// After SIGTERM, how long a running backup gets to finish before it is cancelled (and
    /// what it stopped is started again).
    #[arg(
        long,
        env = "HOLDFAST_SHUTDOWN_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    shutdown_timeout: HumanDuration,

    /// The safety-net full reload of the specs, in case a file event was missed.
    #[arg(
        long,
        env = "HOLDFAST_RESYNC",
        default_value = "60s",
        value_name = "DURATION"
    )]
    resync: HumanDuration,

    /// A file holding the bearer tokens the HTTP API requires. YAML: `tokens:`, a list of
    /// `{name, scope, token, expires}`; scope `metrics` reads /metrics only, `read` every
    /// route; `token` has at least 16 characters; `expires` (optional) is an RFC 3339
    /// time. A file of one line that is not a YAML mapping is one token, `default`, scope
    /// `read`. /healthz and the dashboard's page (/ and /ui/) need none. Required when
    /// --listen is not a loopback address.
    #[arg(
        long,
        env = "HOLDFAST_API_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "HTTP API"
    )]
    api_token_file: Option<PathBuf>,

    /// The address people reach holdfast's API at (e.g. behind a reverse proxy), for the
    /// links in notifications; without it, notifications carry no link.
    #[arg(long, env = "HOLDFAST_EXTERNAL_URL", value_name = "URL", value_parser = external_url)]
    external_url: Option<String>,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,

    #[command(flatten)]
    pub(super) state: crate::settings::StateFlag,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) host_labels: crate::settings::HostLabelsFlag,

    #[command(flatten)]
    pub(super) docker: crate::settings::DockerFlags,

    #[command(flatten)]
    pub(super) archive_via: crate::settings::ArchiveViaFlag,

    #[command(flatten)]
    pub(super) history: crate::settings::HistoryFlag,

    #[command(flatten)]
    pub(super) listen: crate::settings::ListenFlag,
}

pub fn run(settings: &Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
    // Checked before anything starts: a daemon that cannot serve its API safely does not run.
    let tokens = crate::api::load_tokens(settings.listen, args.api_token_file.as_deref())?;
    limit_malloc_arenas();
    let runtime = super::runtime()?;
    let result = runtime.block_on(async {
        // First: a signal from here on is a request to stop, handled once the loop runs,
        // never a kill in the middle of start-up recovery.
        let signals = super::signals()?;
        // One daemon per state folder, and no `holdfast backup` beside it.
        let _lock = crate::state::lock::try_lock(&settings.state)?;
        // One writer per host folder of the repository, whatever its state folder: a second
        // daemon's retention would delete this one's archives.
        let host = settings.host();
        let repo = super::repository(settings);
        let _repo_lock = super::lock_repository(&repo, "holdfast run")?;
        let engine = Engine::open(&settings.docker).await?;
        let executor = Arc::new(super::executor(settings, engine)?);
        let state = executor.state();
        let options = Options {
            specs: settings.specs.clone(),
            repository: crate::repo::storage::LocalStorage::host_root(&settings.repository, &host),
            status_dir: args.status_dir,
            max_concurrent: args.max_concurrent_runs.max(1),
            shutdown_timeout: args.shutdown_timeout.as_duration(),
            resync: args.resync.as_duration().max(Duration::from_secs(1)),
            logs: settings.state.join("logs"),
            history_limit: settings.history_limit,
            host: host.clone(),
            host_labels: settings.host_labels(),
            external_url: args.external_url.clone(),
        };
        let hub = Arc::new(crate::hub::Hub::new());
        let listener = crate::api::bind(settings.listen).await?;
        let address = listener.local_addr()?;
        // The API reads through a connection of its own: a request never waits for the
        // loop's database work, and cannot write.
        let reader = Arc::new(crate::state::StateDb::open_reader(&settings.state)?);
        let app = crate::api::AppState::new(
            hub.clone(),
            reader,
            Some(executor.engine().clone()),
            repo.clone(),
            settings.state.join("logs"),
            None,
        )
        .with_tokens(tokens)
        .with_named_repositories({
            let executor = executor.clone();
            Arc::new(move |name: &str| {
                executor
                    .repository_named(name)
                    .map_err(|e| e.reason)
            })
        });
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stop = async {
                let _ = api_stopped.await;
            };
            if let Err(e) = crate::api::serve(listener, app, stop).await {
                tracing::error!("the HTTP API stopped: {e}");
            }
        });
        info!(address = %address, "HTTP API and metrics listening on http://{address}/");
        let runner: Arc<dyn Runner> = Arc::new(LiveRunner::new(executor.clone(), repo.clone()));
        let mut controller = Controller::new(
            options,
            runner.clone(),
            repo,
            state,
            hub,
            Arc::new(SystemClock),
        );
        controller.tell_systemd(crate::controller::sd_notify::SdNotify::from_env());
        controller.recover(&*runner).await?;
        // What this state folder's killed restores left beside volumes (their runs are
        // recorded as interrupted now), before anything can restore again.
        for path in
            crate::restore::remove_interrupted_staging(executor.engine(), executor.state()).await?
        {
            warn!(path = %path.display(), "removed what an interrupted restore left");
        }
        let (spec_tx, spec_rx) = mpsc::unbounded_channel();
        let _watcher = crate::controller::watch::watch(&settings.specs, spec_tx)?;
        info!(specs = %settings.specs.display(), state = %settings.state.display(), host = %host, "holdfast is running");
        let result = controller.run(spec_rx, signals).await;
        // Requests in flight get a moment to end; event streams never end by themselves.
        let _ = stop_api.send(());
        let mut server = server;
        if tokio::time::timeout(API_DRAIN, &mut server).await.is_err() {
            server.abort();
        }
        result?;
        anyhow::Ok(())
    });
    // A cancelled run's archive writer may still be busy on a blocking thread; its output
    // is a `.partial` that the next start removes, so do not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// glibc gives every thread that allocates an arena of its own, up to eight per core, and
/// never returns them; a long-running daemon whose blocking workers come and go keeps
/// paying for them. One per core is plenty: the hot paths allocate their buffers once.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; it is called before the
        // runtime starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// How long the HTTP server gets to finish requests in flight at shutdown.
const API_DRAIN: Duration = Duration::from_secs(2);

/// `--external-url`: an http:// or https:// URL, kept without a trailing slash.
fn external_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "`{text}` is not an http:// or https:// URL with a host"
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}
