//! Stage two: what a schema cannot say. Cron expressions parse, time zones exist, one-of
//! fields hold exactly one value, retention keeps something, and so on.
//!
//! Each check reports the field it concerns; the caller places it in the file.

use crate::diagnostic::FieldPath;
use crate::spec::common::{
    Consistency, Databases, Dump, Engine, ExecHook, HookFailure, Output, SecretSource, StopMode,
    Targets,
};
use crate::spec::notifier::{Notify, UrlSource};
use crate::spec::repository::{
    AgeEncryption, DEFAULT_REPOSITORY, HostSecret, RepositoryFormat, S3Storage, SftpStorage,
    StorageSpec,
};
use crate::spec::{
    Archive, BackupPolicy, ContainerSchedule, Notifier, Repository, RepositorySpec, Resource,
    Restore, RestoreMode,
};

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

/// What the typed spec cannot tell, because a default fills it in: an `output` that
/// writes both `repository` and `repositories`. `value` is the document as written.
pub fn check_written(value: &serde_json::Value) -> Vec<FieldProblem> {
    let mut problems = Problems::default();
    if let Some(output) = value.pointer("/spec/output").and_then(|o| o.as_object())
        && output.contains_key("repository")
        && output.contains_key("repositories")
    {
        problems.add_hinted(
            self::spec().key("output").key("repository"),
            "set repository or repositories, not both",
            Some(
                "list every repository in repositories, the one written first at the front".into(),
            ),
        );
    }
    problems.0
}

/// Checks one object on its own. Cross-object checks (duplicates, references) are done by
/// the caller, which sees every file.
pub fn check(resource: &Resource) -> Vec<FieldProblem> {
    let mut problems = Problems::default();
    match resource {
        Resource::BackupPolicy(policy) => check_policy(policy, &mut problems),
        Resource::Archive(archive) => check_archive(archive, &mut problems),
        Resource::Restore(restore) => check_restore(restore, &mut problems),
        Resource::Repository(repository) => check_repository(repository, &mut problems),
        Resource::Notifier(notifier) => check_notifier(notifier, &mut problems),
        Resource::ContainerSchedule(schedule) => check_container_schedule(schedule, &mut problems),
    }
    if let Some(selector) = resource.host_selector() {
        check_host_selector(selector, &mut problems);
    }
    problems.0
}

/// A hostSelector's keys and values are those `--host-labels` accepts, so that a typo is
/// found here and not as an object no host ever runs.
fn check_host_selector(selector: &crate::spec::HostSelector, problems: &mut Problems) {
    let at = spec().key("hostSelector").key("matchLabels");
    for (key, value) in &selector.match_labels {
        if let Err(e) = crate::settings::check_label_key(key) {
            problems.add(at.key(key.clone()), e);
        } else if let Err(e) = crate::settings::check_label_value(value) {
            problems.add(at.key(key.clone()), e);
        }
    }
}

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

fn check_policy(policy: &BackupPolicy, problems: &mut Problems) {
    let spec = &policy.spec;
    if let Err(message) = spec.schedule.parse() {
        problems.add(self::spec().key("schedule"), message);
    }
    if let Some(tz) = &spec.timezone
        && let Err(message) = tz.parse()
    {
        let hint = tz.closest_known().map(|c| format!("did you mean `{c}`?"));
        problems.add_hinted(self::spec().key("timezone"), message, hint);
    }
    if let Some(jitter) = spec.jitter
        && jitter.as_duration() > std::time::Duration::from_secs(24 * 3600)
    {
        problems.add(
            self::spec().key("jitter"),
            "jitter is longer than a day; runs would drift past their schedule",
        );
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
    if let Some(retention) = &spec.retention
        && !retention.keeps_something()
    {
        problems.add_hinted(
                self::spec().key("retention"),
                "retention keeps no archive at all",
                Some("set keepLast, a keepHourly..keepYearly count or keepWithin above zero, or remove retention to keep everything".into()),
            );
    }
    for (i, entry) in spec.notify.iter().enumerate() {
        check_notify_entry(entry, &self::spec().key("notify").index(i), problems);
    }
}

fn check_container_schedule(schedule: &ContainerSchedule, problems: &mut Problems) {
    let spec = &schedule.spec;
    match (&spec.schedule, &spec.run_at) {
        (Some(_), Some(_)) => problems.add_hinted(
            self::spec().key("runAt"),
            "set schedule or runAt, not both",
            Some("schedule repeats (cron); runAt acts once at the time given".into()),
        ),
        (None, None) => problems.add_hinted(
            self::spec(),
            "a ContainerSchedule needs schedule or runAt",
            Some(
                "add `schedule: \"0 4 * * *\"` to act every night, or `runAt: 2026-12-24T03:00:00+01:00` to act once"
                    .into(),
            ),
        ),
        _ => {}
    }
    if let Some(cron) = &spec.schedule
        && let Err(message) = cron.parse()
    {
        problems.add(self::spec().key("schedule"), message);
    }
    if let Some(run_at) = &spec.run_at
        && let Err(message) = run_at.parse()
    {
        problems.add(self::spec().key("runAt"), message);
    }
    if let Some(tz) = &spec.timezone
        && let Err(message) = tz.parse()
    {
        let hint = tz.closest_known().map(|c| format!("did you mean `{c}`?"));
        problems.add_hinted(self::spec().key("timezone"), message, hint);
    }
    let targets = &spec.targets;
    let at = self::spec().key("targets");
    if targets.stacks.is_empty()
        && targets.containers.is_empty()
        && targets
            .selector
            .as_ref()
            .is_none_or(|s| s.match_labels.is_empty())
    {
        problems.add_hinted(
            at.clone(),
            "targets select no container, so the action would do nothing",
            Some("list stacks or containers, or a selector with matchLabels".into()),
        );
    }
    if !targets.volumes.is_empty() {
        problems.add_hinted(
            at.key("volumes"),
            "a ContainerSchedule acts on containers, not volumes",
            Some("name the stacks or containers that use the volumes".into()),
        );
    }
    if !targets.paths.is_empty() {
        problems.add_hinted(
            at.key("paths"),
            "a ContainerSchedule acts on containers, not host folders",
            Some("name the stacks or containers that use the folders".into()),
        );
    }
    if !targets.compose_projects.is_empty() {
        problems.add_hinted(
            at.key("composeProjects"),
            "a ContainerSchedule acts on running stacks, not on compose folders",
            Some("name the project in stacks".into()),
        );
    }
    if !targets.exclude.is_empty() {
        problems.add_hinted(
            at.key("exclude"),
            "exclude leaves data out of a backup; a ContainerSchedule archives nothing",
            Some("remove exclude, and list only the containers to act on".into()),
        );
    }
    for (i, stack) in targets.stacks.iter().enumerate() {
        if stack.is_empty() {
            problems.add(at.key("stacks").index(i), "a stack name must not be empty");
        }
    }
    let mut seen = Vec::new();
    for (i, name) in spec.after.iter().enumerate() {
        if seen.contains(&name) {
            problems.add(
                self::spec().key("after").index(i),
                format!("`{name}` is listed twice"),
            );
        }
        seen.push(name);
    }
}

fn check_archive(archive: &Archive, problems: &mut Problems) {
    let spec = &archive.spec;
    if let Some(run_at) = &spec.run_at
        && let Err(message) = run_at.parse()
    {
        problems.add(self::spec().key("runAt"), message);
    }
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
    if let Some(dir) = &spec.recipe_to
        && !dir.starts_with('/')
    {
        problems.add(
            self::spec().key("recipeTo"),
            format!("`{dir}` is not an absolute path"),
        );
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
            Some(
                "list stacks, containers, volumes, paths or composeProjects, or a selector with matchLabels"
                    .into(),
            ),
        );
    }
    for (i, stack) in targets.stacks.iter().enumerate() {
        if stack.is_empty() {
            problems.add(at.key("stacks").index(i), "a stack name must not be empty");
        }
    }
    for (i, path) in targets.paths.iter().enumerate() {
        check_host_folder(path, &at.key("paths").index(i), problems);
    }
    for (i, project) in targets.compose_projects.iter().enumerate() {
        let at = at.key("composeProjects").index(i);
        check_host_folder(&project.path, &at.key("path"), problems);
        if let Some(file) = &project.file
            && (file.trim().is_empty()
                || std::path::Path::new(file)
                    .components()
                    .any(|c| c == std::path::Component::ParentDir))
        {
            problems.add_hinted(
                at.key("file"),
                format!("`{file}` must name a compose file in the project's folder"),
                Some("give its name relative to `path`, e.g. `compose.prod.yaml`".into()),
            );
        }
        if let Some(name) = &project.project_name
            && (name.is_empty() || crate::spec::common::normalize_project_name(name) != *name)
        {
            problems.add_hinted(
                at.key("projectName"),
                format!("`{name}` is not a Compose project name"),
                Some(
                    "use lower-case letters, digits, `-` and `_`, starting with a letter or digit"
                        .into(),
                ),
            );
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

/// A host folder of the targets: absolute, without `..`, and not one of the kernel's
/// virtual file systems, which hold no data.
fn check_host_folder(path: &str, at: &FieldPath, problems: &mut Problems) {
    use std::path::{Component, Path};
    let p = Path::new(path);
    if !p.is_absolute() {
        problems.add_hinted(
            at.clone(),
            format!("`{path}` is not an absolute path"),
            Some("name the folder from the root, e.g. `/srv/compose`".into()),
        );
    } else if p.components().any(|c| c == Component::ParentDir) {
        problems.add_hinted(
            at.clone(),
            format!("`{path}` goes up with `..`"),
            Some("name the folder itself, without `..`".into()),
        );
    } else if ["/proc", "/sys", "/dev"].iter().any(|v| p.starts_with(v)) {
        problems.add(
            at.clone(),
            format!(
                "`{path}` is a virtual file system of the kernel, which holds no data to back up"
            ),
        );
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
    if consistency.hooks.on_failure == HookFailure::SkipTarget && consistency.hooks.pre.is_empty() {
        problems.add_hinted(
            hooks.key("onFailure"),
            "onFailure: skipTarget does nothing without pre hooks, the only hooks it concerns",
            Some("add a pre hook, or remove onFailure".into()),
        );
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
    let hint = "e.g. `password: {fromEnv: POSTGRES_PASSWORD}` reads the container's own variable";
    let set = [
        ("fromEnv", secret.from_env.is_some()),
        ("fromFile", secret.from_file.is_some()),
        ("value", secret.value.is_some()),
    ];
    exactly_one(&set, at, hint, problems);
}

/// Checks that exactly one of `options` (a field name and whether it is set) is set:
/// "set exactly one of a, b or c", with `hint` when none is, and naming those found when
/// several are.
fn exactly_one(options: &[(&str, bool)], at: &FieldPath, hint: &str, problems: &mut Problems) {
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    let listed = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => return,
    };
    let set: Vec<&str> = options
        .iter()
        .filter_map(|(name, present)| present.then_some(*name))
        .collect();
    match set.len() {
        1 => {}
        0 => problems.add_hinted(
            at.clone(),
            format!("set exactly one of {listed}"),
            Some(hint.into()),
        ),
        _ => problems.add(
            at.clone(),
            format!("set exactly one of {listed}; found {}", set.join(" and ")),
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
    let list = at.key("repositories");
    for (i, name) in output.repositories.iter().enumerate() {
        if output.repositories[..i].contains(name) {
            problems.add(
                list.index(i),
                format!("`{name}` is named twice; each repository gets one copy"),
            );
        }
    }
}

/// A Repository on its own: exactly one storage, each storage's fields well-formed, secrets
/// from the host, age recipients that parse, and a password exactly when the format is
/// restic. Paths may be relative: loading resolves them against the spec file's folder, as
/// the config file's are.
fn check_repository(repository: &Repository, problems: &mut Problems) {
    if repository.metadata.name == DEFAULT_REPOSITORY {
        problems.add_hinted(
            FieldPath::root().key("metadata").key("name"),
            format!("`{DEFAULT_REPOSITORY}` is the name of the folder given by --repository; a Repository cannot take it"),
            Some("choose another name, e.g. offsite".into()),
        );
    }
    let spec = &repository.spec;
    let storage = self::spec().key("storage");
    check_storage(&spec.storage, &storage, problems);
    if check_restic(spec, problems) {
        return;
    }
    if let Some(encryption) = &spec.encryption {
        let at = self::spec().key("encryption");
        match &encryption.age {
            Some(age) => check_age(age, &at.key("age"), problems),
            None => problems.add_hinted(
                at,
                "encryption names no method",
                Some(
                    "e.g. `encryption: {age: {recipients: [age1…]}}`, or remove encryption".into(),
                ),
            ),
        }
    }
}

/// The password of a restic repository: present exactly when the format is restic, and
/// then the only encryption. Returns true when `encryption` was refused as a whole, so its
/// age fields are not checked as well.
fn check_restic(spec: &RepositorySpec, problems: &mut Problems) -> bool {
    match (spec.format, &spec.password) {
        (RepositoryFormat::Restic, None) => problems.add_hinted(
            self::spec().key("format"),
            "a restic repository needs a password, which encrypts everything stored there; without it nothing can be restored",
            Some("add `password` as {fromEnv: VARIABLE} or {fromFile: PATH}, read by holdfast on this host".into()),
        ),
        (RepositoryFormat::Restic, Some(password)) => {
            check_host_secret(password, &self::spec().key("password"), problems)
        }
        (RepositoryFormat::Archives, Some(_)) => problems.add_hinted(
            self::spec().key("password"),
            "only a restic repository has a password",
            Some(
                "add format: restic, or to encrypt archives use encryption.age instead"
                    .into(),
            ),
        ),
        (RepositoryFormat::Archives, None) => {}
    }
    let refused = spec.format == RepositoryFormat::Restic && spec.encryption.is_some();
    if refused {
        problems.add_hinted(
            self::spec().key("encryption"),
            "a restic repository is encrypted with its password; encryption.age is for format: archives",
            Some("remove encryption".into()),
        );
    }
    refused
}

fn check_storage(storage: &StorageSpec, at: &FieldPath, problems: &mut Problems) {
    let set = [
        ("s3", storage.s3.is_some()),
        ("sftp", storage.sftp.is_some()),
        ("local", storage.local.is_some()),
    ];
    let hint = "e.g. `storage: {local: {path: /mnt/usb/backups}}`";
    exactly_one(&set, at, hint, problems);
    if let Some(s3) = &storage.s3 {
        check_s3(s3, &at.key("s3"), problems);
    }
    if let Some(sftp) = &storage.sftp {
        check_sftp(sftp, &at.key("sftp"), problems);
    }
    if let Some(local) = &storage.local
        && local.path.trim().is_empty()
    {
        problems.add(
            at.key("local").key("path"),
            "the folder must not be empty; give an absolute path or one relative to this file",
        );
    }
}

fn check_s3(s3: &S3Storage, at: &FieldPath, problems: &mut Problems) {
    if let Err(message) = check_endpoint(&s3.endpoint) {
        problems.add_hinted(
            at.key("endpoint"),
            message,
            Some("e.g. https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:3900".into()),
        );
    }
    if let Err(message) = check_bucket_name(&s3.bucket) {
        problems.add(at.key("bucket"), message);
    }
    if s3.prefix.starts_with('/') {
        problems.add_hinted(
            at.key("prefix"),
            format!(
                "`{}` starts with '/'; a prefix is a key inside the bucket",
                s3.prefix
            ),
            Some(format!("write `{}`", s3.prefix.trim_start_matches('/'))),
        );
    }
    if s3.region.trim().is_empty() {
        problems.add_hinted(
            at.key("region"),
            "the region must not be empty",
            Some(
                "leave it out for us-east-1, or name the bucket's region (garage for Garage)"
                    .into(),
            ),
        );
    }
    check_host_secret(&s3.access_key_id, &at.key("accessKeyId"), problems);
    check_host_secret(&s3.secret_access_key, &at.key("secretAccessKey"), problems);
}

/// An endpoint is an `http://` or `https://` URL with a host.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .ok_or_else(|| format!("`{endpoint}` is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) {
        return Err(format!("`{endpoint}` names no host"));
    }
    Ok(())
}

/// S3's bucket naming rules: 3-63 characters of lowercase letters, digits, '-' and '.',
/// starting and ending with a letter or digit.
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!(
            "`{bucket}` is {} characters long; a bucket name has 3 to 63",
            bucket.len()
        ));
    }
    if !bucket.chars().all(valid_char)
        || !edge(bucket.chars().next())
        || !edge(bucket.chars().last())
        || bucket.contains("..")
    {
        return Err(format!(
            "`{bucket}` is not a valid bucket name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn check_sftp(sftp: &SftpStorage, at: &FieldPath, problems: &mut Problems) {
    for (field, value) in [("host", &sftp.host), ("user", &sftp.user)] {
        if value.trim().is_empty() {
            problems.add(at.key(field), format!("the {field} must not be empty"));
        }
    }
    if !sftp.path.starts_with('/') {
        problems.add_hinted(
            at.key("path"),
            format!("`{}` is not an absolute path on the server", sftp.path),
            Some("e.g. /srv/backups/holdfast".into()),
        );
    }
    for (field, value) in [
        ("privateKeyFile", &sftp.private_key_file),
        ("knownHostsFile", &sftp.known_hosts_file),
    ] {
        if value.trim().is_empty() {
            problems.add(
                at.key(field),
                format!("{field} must name a file on this host"),
            );
        }
    }
    if sftp.port == 0 {
        problems.add(at.key("port"), "port 0 is not a port a server listens on");
    }
}

fn check_notify_entry(entry: &Notify, at: &FieldPath, problems: &mut Problems) {
    match (&entry.reference, &entry.url) {
        (Some(_), Some(_)) => problems.add_hinted(
            at.clone(),
            "set ref or url, not both",
            Some("ref names a Notifier object, which holds its own url".into()),
        ),
        (None, None) => problems.add_hinted(
            at.clone(),
            "set ref (a Notifier object's name) or url",
            Some(
                "e.g. `notify: [{ref: ops}]`, or `notify: [{url: {fromEnv: HOLDFAST_NTFY_URL}}]`"
                    .into(),
            ),
        ),
        (None, Some(url)) => check_url_source(url, &at.key("url"), problems),
        (Some(name), None) => {
            if entry.listed_events().is_some() {
                problems.add_hinted(
                    at.key("events"),
                    format!("a ref sends the events Notifier `{name}` lists"),
                    Some(
                        "set events on the Notifier, or write a url entry with events of its own"
                            .into(),
                    ),
                );
            }
        }
    }
    if entry.events.is_some() && entry.on.is_some() {
        problems.add_hinted(
            at.key("on"),
            "set events or on, not both",
            Some("on is the older name of events".into()),
        );
    }
    if entry.listed_events().is_some_and(Vec::is_empty) {
        problems.add_hinted(
            at.key("events"),
            "an empty events list sends nothing",
            Some("list the events to send, or remove events for the default".into()),
        );
    }
}

fn check_notifier(notifier: &Notifier, problems: &mut Problems) {
    let spec = &notifier.spec;
    check_url_source(&spec.url, &self::spec().key("url"), problems);
    if spec.events.is_empty() {
        problems.add_hinted(
            self::spec().key("events"),
            "an empty events list sends nothing",
            Some("list the events to send, or remove events for every event but Succeeded".into()),
        );
    }
    if let Some(repeat) = &spec.repeat
        && repeat.as_duration() < std::time::Duration::from_secs(60)
    {
        problems.add_hinted(
            self::spec().key("repeat"),
            format!("repeat `{repeat}` is shorter than a minute"),
            Some(
                "repeat resends a lasting problem, e.g. 24h; remove it to send each problem once"
                    .into(),
            ),
        );
    }
    if let Some(selector) = &spec.selector
        && selector.match_labels.is_empty()
    {
        problems.add_hinted(
            self::spec().key("selector"),
            "a selector without matchLabels selects nothing",
            Some("remove selector to cover every object".into()),
        );
    }
}

/// A URL written out is parsed now; one read from the environment or a file is parsed
/// by the daemon, which marks the Notifier Stalled when it is not usable.
fn check_url_source(url: &UrlSource, at: &FieldPath, problems: &mut Problems) {
    match url {
        UrlSource::Literal(text) => {
            if let Err(e) = crate::notify::Target::parse(text) {
                problems.add(at.clone(), format!("the URL {e}"));
            }
        }
        UrlSource::Secret(secret) => check_host_secret(secret, at, problems),
    }
}

fn check_host_secret(secret: &HostSecret, at: &FieldPath, problems: &mut Problems) {
    match (&secret.from_env, &secret.from_file) {
        (Some(_), Some(_)) => problems.add(
            at.clone(),
            "set exactly one of fromEnv or fromFile, not both",
        ),
        (None, None) => problems.add_hinted(
            at.clone(),
            "set exactly one of fromEnv or fromFile",
            Some("fromEnv reads a variable of holdfast's own environment; fromFile reads a file on this host".into()),
        ),
        (Some(var), None) if var.trim().is_empty() => {
            problems.add(at.key("fromEnv"), "the variable name must not be empty")
        }
        (None, Some(path)) if path.trim().is_empty() => {
            problems.add(at.key("fromFile"), "the file name must not be empty")
        }
        _ => {}
    }
}

fn check_age(age: &AgeEncryption, at: &FieldPath, problems: &mut Problems) {
    let recipients = at.key("recipients");
    if age.recipients.is_empty() {
        problems.add_hinted(
            recipients.clone(),
            "list at least one recipient: archives encrypted to nobody could never be read",
            Some("age-keygen prints a public key (age1…) beside each identity it makes".into()),
        );
    }
    for (i, recipient) in age.recipients.iter().enumerate() {
        if let Err(e) = recipient.trim().parse::<age::x25519::Recipient>() {
            let hint = if recipient.starts_with("AGE-SECRET-KEY-") {
                "this is an identity, the private half: give its public key (age-keygen -y prints it) and keep the identity off the specs"
            } else {
                "an age X25519 recipient starts with age1, as age-keygen prints it"
            };
            problems.add_hinted(
                recipients.index(i),
                format!("not an age X25519 recipient: {e}"),
                Some(hint.into()),
            );
        }
    }
    if let Some(file) = &age.identity_file
        && file.trim().is_empty()
    {
        problems.add(
            at.key("identityFile"),
            "the file name must not be empty; remove identityFile to encrypt without one",
        );
    }
}
