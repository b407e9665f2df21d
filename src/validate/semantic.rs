//! Stage two: what a schema cannot say. Cron expressions parse, time zones exist, one-of
//! fields hold exactly one value, retention keeps something, and so on.
//!
//! Each check reports the field it concerns; the caller places it in the file.

use crate::diagnostic::{FieldPath, did_you_mean};
use crate::spec::common::{
    Consistency, Databases, Dump, Engine, ExecHook, Output, SecretSource, StopMode, Targets,
};
use crate::spec::{Archive, BackupPolicy, Resource, Restore, RestoreMode};

/// A problem with a field of a valid-shaped object.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldProblem {
    pub field: FieldPath,
    pub message: String,
    pub hint: Option<String>,
}

#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn add(&mut self, field: FieldPath, message: impl Into<String>) {
        self.add_hinted(field, message, None);
    }

    fn add_hinted(&mut self, field: FieldPath, message: impl Into<String>, hint: Option<String>) {
        self.0.push(FieldProblem {
            field,
            message: message.into(),
            hint,
        });
    }
}

/// Checks one object on its own. Cross-object checks (duplicates, references) are done by
/// the caller, which sees every file.
pub fn check(resource: &Resource) -> Vec<FieldProblem> {
    let mut problems = Problems::default();
    match resource {
        Resource::BackupPolicy(policy) => check_policy(policy, &mut problems),
        Resource::Archive(archive) => check_archive(archive, &mut problems),
        Resource::Restore(restore) => check_restore(restore, &mut problems),
    }
    problems.0
}

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

fn check_policy(policy: &BackupPolicy, problems: &mut Problems) {
    let spec = &policy.spec;
    if let Err(message) = spec.schedule.parse() {
        problems.add(self::spec().key("schedule"), message);
    }
    if let Some(tz) = &spec.timezone {
        if let Err(message) = tz.parse() {
            let hint = tz.closest_known().map(|c| format!("did you mean `{c}`?"));
            problems.add_hinted(self::spec().key("timezone"), message, hint);
        }
    }
    if let Some(jitter) = spec.jitter {
        if jitter.as_duration() > std::time::Duration::from_secs(24 * 3600) {
            problems.add(
                self::spec().key("jitter"),
                "jitter is longer than a day; runs would drift past their schedule",
            );
        }
    }
    if let Some(verify) = &spec.verify {
        let at = self::spec().key("verify");
        if let Some(schedule) = &verify.schedule {
            if let Err(message) = schedule.parse() {
                problems.add(at.clone().key("schedule"), message);
            }
        } else if verify.sample.is_some() {
            problems.add(
                at.clone().key("sample"),
                "sample needs a schedule: it says how many archives each scheduled verification takes",
            );
        }
        if !verify.after_run && verify.schedule.is_none() {
            problems.add(
                at,
                "verify does nothing without afterRun: true or a schedule",
            );
        }
    }
    check_targets(&spec.targets, &self::spec().key("targets"), problems);
    check_consistency(
        &spec.consistency,
        &self::spec().key("consistency"),
        problems,
    );
    check_dumps(&spec.dumps, &self::spec().key("dumps"), problems);
    check_output(&spec.output, &self::spec().key("output"), problems);
    if let Some(retention) = &spec.retention {
        if !retention.keeps_something() {
            problems.add_hinted(
                self::spec().key("retention"),
                "retention keeps no archive at all",
                Some("set keepLast, a keepHourly..keepYearly count or keepWithin above zero, or remove retention to keep everything".into()),
            );
        }
    }
    for (i, notify) in spec.notify.iter().enumerate() {
        if !notify.url.contains("://") {
            problems.add(
                self::spec().key("notify").index(i).key("url"),
                format!("`{}` is not a URL; expected scheme://host/path, e.g. ntfy://ntfy.example/backups", notify.url),
            );
        }
    }
}

fn check_archive(archive: &Archive, problems: &mut Problems) {
    let spec = &archive.spec;
    let inline = [
        ("targets", spec.targets.is_some()),
        ("include", spec.include.is_some()),
        ("consistency", spec.consistency.is_some()),
        ("dumps", spec.dumps.is_some()),
    ];
    match &spec.policy_ref {
        Some(_) => {
            for (field, present) in inline {
                if present {
                    problems.add_hinted(
                        self::spec().key(field),
                        format!("`{field}` cannot be set together with policyRef; the policy's {field} are used"),
                        Some("remove it, or remove policyRef to describe the archive inline".into()),
                    );
                }
            }
        }
        None => match &spec.targets {
            None => problems.add_hinted(
                self::spec(),
                "an Archive needs either policyRef or targets",
                Some("name a BackupPolicy with `policyRef: <name>`, or list targets".into()),
            ),
            Some(targets) => check_targets(targets, &self::spec().key("targets"), problems),
        },
    }
    if let Some(consistency) = &spec.consistency {
        check_consistency(consistency, &self::spec().key("consistency"), problems);
    }
    if let Some(dumps) = &spec.dumps {
        check_dumps(dumps, &self::spec().key("dumps"), problems);
    }
    if let Some(output) = &spec.output {
        check_output(output, &self::spec().key("output"), problems);
    }
    if spec.ttl.is_some_and(|t| t.as_duration().is_zero()) {
        problems.add(
            self::spec().key("ttl"),
            "a ttl of zero would delete the archive as soon as it is taken",
        );
    }
}

fn check_restore(restore: &Restore, problems: &mut Problems) {
    let spec = &restore.spec;
    let from = self::spec().key("from");
    match (&spec.from.archive, &spec.from.policy) {
        (Some(_), Some(_)) => problems.add(
            from.clone(),
            "set exactly one of archive or policy, not both",
        ),
        (None, None) => problems.add_hinted(
            from.clone(),
            "set exactly one of archive or policy",
            Some("e.g. `from: {policy: nextcloud-nightly, at: latest}`".into()),
        ),
        _ => {}
    }
    match (&spec.from.at, &spec.from.policy) {
        (Some(_), None) => problems.add(
            from.key("at"),
            "`at` chooses among a policy's archives; it needs `policy`",
        ),
        (Some(at), Some(_))
            if at != "latest" && chrono::DateTime::parse_from_rfc3339(at).is_err() =>
        {
            problems.add_hinted(
                from.key("at"),
                format!("`{at}` is neither `latest` nor an RFC 3339 time"),
                Some("e.g. latest or 2026-11-25T03:00:00Z".into()),
            )
        }
        _ => {}
    }
    if spec.mode == RestoreMode::InPlace && spec.stop == StopMode::None {
        problems.add_hinted(
            self::spec().key("stop"),
            "mode InPlace replaces volumes that containers write to; their writers must be stopped",
            Some("set `stop: stack` (or `container`), or use mode NewVolumes".into()),
        );
    }
    check_restore_options(spec, problems);
    if let Some(dir) = &spec.recipe_to {
        if !dir.starts_with('/') {
            problems.add(
                self::spec().key("recipeTo"),
                format!("`{dir}` is not an absolute path"),
            );
        }
    }
    for (from_name, to_name) in &spec.volume_mapping {
        if !valid_volume_name(to_name) {
            problems.add(
                self::spec().key("volumeMapping").key(from_name.clone()),
                format!("`{to_name}` is not a valid Docker volume name"),
            );
        }
    }
}

/// Options that would do nothing together are refused: an option does what it says.
fn check_restore_options(spec: &crate::spec::restore::RestoreSpec, problems: &mut Problems) {
    let at = |field: &str| self::spec().key(field);
    if spec.dumps_only {
        let writes_volumes = [
            (!spec.targets.volumes.is_empty(), "targets.volumes"),
            (!spec.volume_mapping.is_empty(), "volumeMapping"),
            (spec.mode == RestoreMode::InPlace, "mode: InPlace"),
            (spec.recipe_to.is_some(), "recipeTo"),
        ];
        for (set, name) in writes_volumes {
            if set {
                problems.add_hinted(
                    at("dumpsOnly"),
                    format!("dumpsOnly only replays dumps, so {name} would do nothing"),
                    Some(format!(
                        "leave out {name}, or use replayDumps instead of dumpsOnly to restore the volumes too"
                    )),
                );
            }
        }
    }
    let volumes_only = !spec.targets.volumes.is_empty() && spec.targets.stacks.is_empty();
    if volumes_only && spec.replay_dumps {
        problems.add_hinted(
            at("replayDumps"),
            "dumps are chosen by stack, and targets.volumes alone chooses none: nothing would be replayed",
            Some("add the stacks whose dumps to replay to targets.stacks".into()),
        );
    }
    if volumes_only && spec.recipe_to.is_some() {
        problems.add_hinted(
            at("recipeTo"),
            "the recipe is chosen by stack, and targets.volumes alone chooses none: nothing would be written",
            Some("add the stacks whose recipe to write to targets.stacks".into()),
        );
    }
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn check_targets(targets: &Targets, at: &FieldPath, problems: &mut Problems) {
    if targets.is_empty() {
        problems.add_hinted(
            at.clone(),
            "targets select nothing, so a backup would archive nothing",
            Some("list stacks, containers or volumes, or a selector with matchLabels".into()),
        );
    }
    for (i, stack) in targets.stacks.iter().enumerate() {
        if stack.is_empty() {
            problems.add(at.key("stacks").index(i), "a stack name must not be empty");
        }
    }
    for (i, pattern) in targets.exclude.paths.iter().enumerate() {
        if pattern.is_empty() || pattern.starts_with('/') {
            problems.add(
                at.key("exclude").key("paths").index(i),
                format!(
                    "`{pattern}` must be a non-empty pattern relative to the volume or mount root"
                ),
            );
        }
    }
}

fn check_consistency(consistency: &Consistency, at: &FieldPath, problems: &mut Problems) {
    let hooks = at.key("hooks");
    for (phase, list) in [
        ("pre", &consistency.hooks.pre),
        ("post", &consistency.hooks.post),
    ] {
        for (i, hook) in list.iter().enumerate() {
            check_exec(&hook.exec, &hooks.key(phase).index(i).key("exec"), problems);
        }
    }
    let order = at.key("stopOrder");
    if consistency.stop == StopMode::None && !consistency.stop_order.is_empty() {
        problems.add_hinted(
            order.clone(),
            "stopOrder does nothing with stop: none, which stops no container",
            Some("set stop: container or stop: stack, or remove stopOrder".into()),
        );
    }
    for (i, name) in consistency.stop_order.iter().enumerate() {
        if name.trim().is_empty() {
            problems.add(
                order.index(i),
                "a name must not be empty; name a service or a container",
            );
        } else if consistency.stop_order[..i].contains(name) {
            problems.add(
                order.index(i),
                format!("`{name}` is named twice; each service or container stops once"),
            );
        }
    }
}

fn check_exec(exec: &ExecHook, at: &FieldPath, problems: &mut Problems) {
    exactly_one_target(
        exec.service.is_some(),
        exec.container.is_some(),
        at,
        problems,
    );
    if exec.command.first().is_some_and(String::is_empty) {
        problems.add(
            at.key("command").index(0),
            "the command name must not be empty",
        );
    }
}

fn exactly_one_target(service: bool, container: bool, at: &FieldPath, problems: &mut Problems) {
    match (service, container) {
        (true, true) => problems.add(at.clone(), "set exactly one of service or container, not both"),
        (false, false) => problems.add_hinted(
            at.clone(),
            "set exactly one of service or container",
            Some("service names a compose service of the targeted stack; container names a container".into()),
        ),
        _ => {}
    }
}

fn check_dumps(dumps: &[Dump], at: &FieldPath, problems: &mut Problems) {
    for (i, dump) in dumps.iter().enumerate() {
        let here = at.index(i);
        exactly_one_target(
            dump.service.is_some(),
            dump.container.is_some(),
            &here,
            problems,
        );
        if let Some(password) = &dump.password {
            check_secret(password, &here.key("password"), problems);
        }
        match (&dump.databases, dump.engine) {
            (Databases::All(_), Engine::Sqlite) => problems.add_hinted(
                here.key("databases"),
                "sqlite has no server to list databases; name the database files",
                Some("e.g. `databases: [/data/app.db]`".into()),
            ),
            (Databases::Named(paths), Engine::Sqlite) => {
                for (j, path) in paths.iter().enumerate() {
                    if !path.starts_with('/') {
                        problems.add(
                            here.key("databases").index(j),
                            format!("`{path}` is not an absolute path inside the container"),
                        );
                    }
                }
            }
            (Databases::Named(names), Engine::Redis) if names.len() > 1 => problems.add(
                here.key("databases"),
                "redis dumps the whole server in one RDB file; use `all`",
            ),
            _ => {}
        }
        if dump.engine == Engine::Sqlite && (dump.user.is_some() || dump.password.is_some()) {
            let field = if dump.user.is_some() {
                "user"
            } else {
                "password"
            };
            problems.add(here.key(field), "sqlite has no users or passwords");
        }
    }
}

fn check_secret(secret: &SecretSource, at: &FieldPath, problems: &mut Problems) {
    let set: Vec<&str> = [
        ("fromEnv", secret.from_env.is_some()),
        ("fromFile", secret.from_file.is_some()),
        ("value", secret.value.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    match set.len() {
        1 => {}
        0 => problems.add_hinted(
            at.clone(),
            "set exactly one of fromEnv, fromFile or value",
            Some(
                "e.g. `password: {fromEnv: POSTGRES_PASSWORD}` reads the container's own variable"
                    .into(),
            ),
        ),
        _ => problems.add(
            at.clone(),
            format!(
                "set exactly one of fromEnv, fromFile or value; found {}",
                set.join(" and ")
            ),
        ),
    }
}

fn check_output(output: &Output, at: &FieldPath, problems: &mut Problems) {
    if let Some(level) = output.level {
        match output.format.level_range() {
            Some(range) if !range.contains(&level) => problems.add(
                at.key("level"),
                format!(
                    "level {level} is out of range for {}: {}-{}",
                    output.format,
                    range.start(),
                    range.end()
                ),
            ),
            None => problems.add(
                at.key("level"),
                format!("format {} is not compressed; remove level", output.format),
            ),
            _ => {}
        }
    }
    if output.repository != "default" {
        problems.add_hinted(
            at.key("repository"),
            format!("unknown repository `{}`; this release has only the `default` repository given by --repository", output.repository),
            did_you_mean(&output.repository, ["default"]),
        );
    }
}
