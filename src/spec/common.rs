//! Spec parts shared by more than one kind: what to back up, how to keep it consistent,
//! which databases to dump, where the archive goes and how long it is kept.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// What a backup covers. At least one of `stacks`, `containers`, `selector`, `volumes`,
/// `paths` or `composeProjects` must select something.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Targets {
    /// Compose projects to back up, by their project name (the `com.docker.compose.project` label).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<String>,
    /// Individual containers, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// Containers selected by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Named volumes to back up whether or not a container uses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Host folders, by absolute path (`/etc`, `/srv/compose`), archived like bind mounts:
    /// excludes apply, holdfast's own folders are left out, and a container that
    /// bind-mounts the folder (or a folder inside or around it) is stopped as for its own
    /// bind mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Compose projects found by their folder, whether their containers exist or not: the
    /// compose file (and `.env` beside it) says the project's volumes and bind mounts. A
    /// project that is down is backed up with nothing to stop; one whose containers exist
    /// is backed up like a stack of `stacks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compose_projects: Vec<ComposeProject>,
    /// What to leave out of the selected targets.
    #[serde(default, skip_serializing_if = "Exclude::is_empty")]
    pub exclude: Exclude,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
            && self.containers.is_empty()
            && self.volumes.is_empty()
            && self.paths.is_empty()
            && self.compose_projects.is_empty()
            && self
                .selector
                .as_ref()
                .is_none_or(|s| s.match_labels.is_empty())
    }
}

/// A Compose project by its folder, as `docker compose` in that folder would see it.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComposeProject {
    /// The project's folder, an absolute path (`/srv/nextcloud`); its `.env` is read for
    /// `${VAR}` values and `COMPOSE_PROJECT_NAME`.
    pub path: String,
    /// The compose file, relative to `path`, when it is not one of Compose's default
    /// names (`compose.yaml`, `compose.yml`, `docker-compose.yml`, `docker-compose.yaml`,
    /// with the `.override` file beside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The project name, when it is not `COMPOSE_PROJECT_NAME` of `.env`, the compose
    /// file's `name:` or the folder's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
}

/// Compose's rule for project names: lower case, only `a-z`, `0-9`, `-` and `_`,
/// starting with a letter or digit. A name this leaves unchanged is one Compose accepts.
pub fn normalize_project_name(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    kept.trim_start_matches(['-', '_']).to_string()
}

/// Selects containers whose labels include every pair given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Label names and the values they must have, e.g. `holdfast.dev/backup: "true"`.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Volumes and paths left out of a backup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exclude {
    /// Named volumes never archived, even when a selected container mounts them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Glob patterns, relative to each volume or bind mount root, of files and folders to skip
    /// (`**/*.log`, `cache/**`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl Exclude {
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.paths.is_empty()
    }
}

/// Which kinds of data a backup includes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Include {
    /// Archive the named volumes of the selected containers.
    #[serde(default = "yes")]
    pub volumes: bool,
    /// Archive the bind-mounted host folders of the selected containers.
    #[serde(default = "yes")]
    pub bind_mounts: bool,
    /// Save the recipe: compose files, `docker inspect` output (secrets redacted), networks.
    #[serde(default = "yes")]
    pub recipe: bool,
    /// After each successful run, refresh the disaster-recovery bundle (the specs, the
    /// repositories' credentials resolved, their age identities, the configuration file
    /// and the restore steps) in every repository the run writes to, as
    /// `<host>/.holdfast/bundle.age`, encrypted to that repository's age recipients. Every
    /// one of them must be encrypted with age.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bundle: bool,
}

fn yes() -> bool {
    true
}

impl Default for Include {
    fn default() -> Self {
        Include {
            volumes: true,
            bind_mounts: true,
            recipe: true,
            bundle: false,
        }
    }
}

/// What is stopped while data is archived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StopMode {
    /// Nothing is stopped; rely on hooks and dumps for consistency.
    #[default]
    None,
    /// Stop each container while its own data is archived.
    Container,
    /// Stop the whole stack while any of its data is archived.
    Stack,
}

/// How a backup is kept consistent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Consistency {
    /// What to stop while archiving; what was running is always started again.
    #[serde(default)]
    pub stop: StopMode,
    /// How long a container gets to stop before it is killed.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: HumanDuration,
    /// After restarting, how long to wait for containers with a healthcheck to become healthy.
    #[serde(default = "default_wait_healthy")]
    pub wait_healthy: HumanDuration,
    /// Commands run before and after the data is archived.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// The order to stop containers in, first stopped first, by service or container
    /// name; they start again in reverse. Containers it does not name stop after those
    /// it names, dependents first (Compose's `depends_on`, from the labels or the compose
    /// file), and start before them. Without it, the order is dependents first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_order: Vec<String>,
}

fn default_stop_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_wait_healthy() -> HumanDuration {
    HumanDuration::from_secs(120)
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency {
            stop: StopMode::None,
            stop_timeout: default_stop_timeout(),
            wait_healthy: default_wait_healthy(),
            hooks: Hooks::default(),
            stop_order: Vec::new(),
        }
    }
}

/// Commands around the archiving step. A post hook always runs when the pre hooks ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hooks {
    /// Run before dumps and stops, in order; what one failing does is `onFailure`'s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<Hook>,
    /// Run after archiving, in order, even when archiving failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<Hook>,
    /// What a pre hook that fails (or runs past its timeout) does: `failRun` (the
    /// default) fails the whole backup; `skipTarget` leaves out only the target the hook
    /// runs in (its stack, or the container outside any stack), and the run goes on
    /// without it and ends PartiallyFailed.
    #[serde(default, skip_serializing_if = "HookFailure::is_default")]
    pub on_failure: HookFailure,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre.is_empty() && self.post.is_empty() && self.on_failure.is_default()
    }
}

/// What a failing pre hook does to the run (`consistency.hooks.onFailure`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HookFailure {
    /// The backup fails: nothing is stopped or archived.
    #[default]
    FailRun,
    /// Only the hook's target (its stack, or its container outside any stack) is left
    /// out: none of its data is dumped or archived and none of its containers stopped.
    SkipTarget,
}

impl HookFailure {
    pub fn is_default(&self) -> bool {
        *self == HookFailure::default()
    }
}

/// One hook step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    /// Run a command inside a running container.
    pub exec: ExecHook,
}

/// A command run with `docker exec`. Name exactly one of `service` or `container`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecHook {
    /// A compose service of the target stack(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A container, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments, not run through a shell.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// How long the command may run before it is treated as failed.
    #[serde(default = "default_hook_timeout")]
    pub timeout: HumanDuration,
}

fn default_hook_timeout() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// Database engines holdfast can dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
    Mariadb,
    Mongo,
    Redis,
    Sqlite,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Mariadb => "mariadb",
            Engine::Mongo => "mongo",
            Engine::Redis => "redis",
            Engine::Sqlite => "sqlite",
        };
        f.write_str(name)
    }
}

/// Which databases a dump covers: `all`, or a list of names (for sqlite: database file paths
/// inside the container).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Databases {
    /// The word `all`.
    All(AllDatabases),
    /// Database names, or for sqlite the paths of the database files in the container.
    Named(#[schemars(length(min = 1))] Vec<String>),
}

impl Default for Databases {
    fn default() -> Self {
        Databases::All(AllDatabases::All)
    }
}

/// The literal `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AllDatabases {
    All,
}

/// A database dump taken with the engine's own tool inside the database container, so the
/// dump is consistent while the database keeps running. Name exactly one of `service` or
/// `container`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dump {
    /// The compose service running the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The container running the database, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The database engine.
    pub engine: Engine,
    /// `all`, or a list of database names; for sqlite, the database file paths.
    #[serde(default)]
    pub databases: Databases,
    /// The user to connect as; defaults to the engine's administrative user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Where the password comes from, if the engine needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
}

/// Where a secret comes from. Set exactly one field. The value itself never appears in
/// status files, logs or the API.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the database container itself, e.g. `POSTGRES_PASSWORD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_env: Option<String>,
    /// A file readable by holdfast holding the secret (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_file: Option<String>,
    /// The secret itself. Prefer `fromEnv` or `fromFile`: specs live in git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("from_env", &self.from_env)
            .field("from_file", &self.from_file)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Archive formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Format {
    /// Uncompressed tar.
    #[serde(rename = "tar")]
    Tar,
    /// gzip-compressed tar; level 1-9.
    #[serde(rename = "tar.gz")]
    TarGz,
    /// zstd-compressed tar; level 1-19.
    #[default]
    #[serde(rename = "tar.zst")]
    TarZst,
    /// Plain files in a folder, for tools that deduplicate on their own.
    #[serde(rename = "folder")]
    Folder,
}

impl Format {
    /// The compression levels the format accepts, if it compresses.
    pub fn level_range(self) -> Option<std::ops::RangeInclusive<i32>> {
        match self {
            Format::TarGz => Some(1..=9),
            Format::TarZst => Some(1..=19),
            Format::Tar | Format::Folder => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::Folder => "folder",
        })
    }
}

/// Where and how archives are written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Output {
    /// The repository to write to: `default`, the folder given by `--repository`, or the
    /// name of a Repository object. Leave it out when `repositories` is given.
    #[serde(default = "default_repository")]
    pub repository: String,
    /// Several repositories, each receiving a copy of every archive (3-2-1): the first is
    /// where the run writes, the others get copies. Replaces `repository`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// The archive format.
    #[serde(default)]
    pub format: Format,
    /// Compression level: 1-9 for tar.gz, 1-19 for tar.zst. Defaults to 3 for tar.zst and 6
    /// for tar.gz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
}

fn default_repository() -> String {
    super::repository::DEFAULT_REPOSITORY.to_string()
}

impl Output {
    /// The repositories archives go to, in order: the first is where the run writes, the
    /// others receive copies. `[repository]` when `repositories` is empty.
    pub fn repositories(&self) -> Vec<String> {
        if self.repositories.is_empty() {
            vec![self.repository.clone()]
        } else {
            self.repositories.clone()
        }
    }
}

impl Default for Output {
    fn default() -> Self {
        Output {
            repository: default_repository(),
            repositories: Vec::new(),
            format: Format::default(),
            level: None,
        }
    }
}

/// How many archives to keep, grandfather-father-son style. An archive is kept when any rule
/// keeps it; the newest successful archive is always kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// Keep the newest N archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest archive of each of the last N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest archive of each of the last N days (in the policy's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest archive of each of the last N ISO weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest archive of each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest archive of each of the last N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every archive younger than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<HumanDuration>,
    /// Log and report what retention would delete, without deleting anything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl Retention {
    /// Whether some rule keeps at least one archive.
    pub fn keeps_something(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        counts.iter().any(|c| c.unwrap_or(0) > 0)
            || self.keep_within.is_some_and(|d| !d.as_duration().is_zero())
    }
}

/// The phases a run goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    PartiallyFailed,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::PartiallyFailed => "PartiallyFailed",
            Phase::Failed => "Failed",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        [
            Phase::Pending,
            Phase::Running,
            Phase::Succeeded,
            Phase::PartiallyFailed,
            Phase::Failed,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}
