//! What the commands that act on specs share: loading them and finding one by name.

use anyhow::{Context, bail};

use crate::diagnostic::did_you_mean;
use crate::executor::BackupRequest;
use crate::settings::Settings;
use crate::spec::Resource;
use crate::validate::{Report, validate_paths};

/// Reads and validates the specs folder; what was left out on purpose (folder links
/// leading out of it) is said on the log.
pub fn load(settings: &Settings) -> Report {
    let report = validate_paths(std::slice::from_ref(&settings.specs));
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    report
}

/// Applies `host`'s hostSelectors to `report` ([`Report::select_host`]): each object it
/// does not run is said as `not selected on HOST: Kind/name: why`, on the returned lines,
/// and taken out of the valid objects, so that what is planned is what that host runs.
pub fn select_host(report: &mut Report, host: &crate::validate::HostView) -> Vec<String> {
    report.select_host(host);
    let mut lines = Vec::new();
    for object in report.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        if let (Some(why), Some(key)) = (&object.not_selected, object.key()) {
            lines.push(format!("not selected on {}: {key}: {why}", host.name));
            object.resource = None;
        }
    }
    lines
}

/// [`load`] for a command whose result comes from the specs: a specs folder that does not
/// exist is an error, not an empty list.
pub fn load_existing(settings: &Settings) -> anyhow::Result<Report> {
    if !settings.specs.exists() {
        bail!(
            "no specs folder at {}: name it with --specs, HOLDFAST_SPECS or `specs` in the configuration file",
            settings.specs.display()
        );
    }
    Ok(load(settings))
}

/// The backup a BackupPolicy or Archive named `name` asks for. An invalid spec is refused
/// with its errors: a typo must never turn into a backup of the wrong thing.
pub fn backup_request(
    report: &Report,
    settings: &Settings,
    name: &str,
) -> anyhow::Result<BackupRequest> {
    let objects: Vec<_> = report
        .files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter(|o| o.name.as_deref() == Some(name))
        .filter(|o| {
            matches!(
                o.kind,
                Some(crate::spec::Kind::BackupPolicy | crate::spec::Kind::Archive)
            )
        })
        .collect();
    let object = match objects.as_slice() {
        [one] => one,
        [] => {
            let names: Vec<&str> = report
                .files
                .iter()
                .flat_map(|f| f.objects.iter())
                .filter(|o| {
                    matches!(
                        o.kind,
                        Some(crate::spec::Kind::BackupPolicy | crate::spec::Kind::Archive)
                    )
                })
                .filter_map(|o| o.name.as_deref())
                .collect();
            let hint = did_you_mean(name, names.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            bail!(
                "no BackupPolicy or Archive named `{name}` in {}{hint}",
                settings.specs.display()
            );
        }
        _ => bail!("both a BackupPolicy and an Archive are named `{name}`; rename one of them"),
    };
    if let Some(why) = &object.not_selected {
        bail!(
            "{} `{name}` is not selected on this host, so it does not run here: {why}",
            object.kind.map(|k| k.to_string()).unwrap_or_default(),
        );
    }
    let Some(resource) = &object.resource else {
        let errors: Vec<String> = object.errors.iter().map(|e| e.to_string()).collect();
        bail!(
            "{} `{name}` is invalid, so it does not run:\n{}",
            object.kind.map(|k| k.to_string()).unwrap_or_default(),
            errors.join("\n")
        );
    };
    let policies: Vec<&Resource> = report.valid_objects().collect();
    BackupRequest::from_resource(resource, &policies)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("preparing `{name}`"))
}

/// The Repository spec named `name`: refused when it is missing (with a did-you-mean) or
/// invalid (with its errors).
pub fn repository_spec(
    report: &Report,
    settings: &Settings,
    name: &str,
) -> anyhow::Result<(String, crate::spec::RepositorySpec)> {
    let repositories = || {
        report
            .files
            .iter()
            .flat_map(|f| f.objects.iter())
            .filter(|o| o.kind == Some(crate::spec::Kind::Repository))
    };
    let Some(object) = repositories().find(|o| o.name.as_deref() == Some(name)) else {
        let names: Vec<&str> = repositories().filter_map(|o| o.name.as_deref()).collect();
        let hint = did_you_mean(name, names.iter().copied())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        bail!(
            "no Repository named `{name}` in {}{hint}; `default` is the --repository folder",
            settings.specs.display()
        );
    };
    match &object.resource {
        Some(Resource::Repository(r)) => Ok((name.to_string(), r.spec.clone())),
        _ => {
            let errors: Vec<String> = object.errors.iter().map(|e| e.to_string()).collect();
            bail!(
                "Repository `{name}` is invalid, so it is not used:\n{}",
                errors.join("\n")
            )
        }
    }
}

/// Every valid BackupPolicy and Archive, for `plan` without a name.
pub fn all_backups(report: &Report) -> Vec<BackupRequest> {
    let policies: Vec<&Resource> = report.valid_objects().collect();
    report
        .valid_objects()
        .filter(|r| matches!(r, Resource::BackupPolicy(_) | Resource::Archive(_)))
        .filter_map(|r| BackupRequest::from_resource(r, &policies).ok())
        .collect()
}
