use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use super::OutputFormat;
use crate::repo::catalog::Catalog;
use crate::repo::prune::Pruned;
use crate::settings::Settings;
use crate::spec::BackupPolicy;
use crate::spec::Resource;
use crate::validate::Report;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The BackupPolicy whose retention to apply; none: every valid policy with retention.
    name: Option<String>,

    /// Print what retention would delete, and delete nothing.
    #[arg(long)]
    dry_run: bool,

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,

    #[command(flatten)]
    pub(super) state: crate::settings::StateFlag,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) repo: crate::settings::RepoFlag,
}

/// One policy's pruning, as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPruned {
    pub policy: String,
    #[serde(flatten)]
    pub pruned: Pruned,
}

/// Applies retention now, as the daemon does after each successful run. Exit code 1 when
/// a deletion failed.
pub fn run(settings: &Settings, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let report = super::specs::load_existing(settings)?;
    let policies = chosen(&report, settings, args.name.as_deref())?;
    if policies.is_empty() {
        eprintln!(
            "nothing to prune: no valid BackupPolicy with retention ({})",
            super::paths(settings, &[super::Path::Specs])
        );
    }
    let repo = super::repository_named(settings)?;
    // Deleting is a writer's work: never beside a daemon or a backup of this state folder
    // or this host's folder of the repository. A dry run only reads.
    let _locks = if args.dry_run {
        None
    } else {
        let state_lock = crate::state::lock::try_lock(&settings.state)?;
        let repo_lock = super::lock_repository(&repo, "holdfast prune")?;
        Some((state_lock, repo_lock))
    };
    let state = if args.dry_run {
        crate::state::StateDb::open_or_empty(&settings.state)?
    } else {
        crate::state::StateDb::open(&settings.state)?
    };
    if !args.dry_run {
        for id in crate::repo::prune::resume(&state, &repo)? {
            eprintln!("finished a deletion a crash had interrupted: {id}");
        }
    }
    let catalog = Catalog::load(&repo)?;
    let mut done = Vec::new();
    for policy in policies {
        done.push(apply(
            &state,
            &repo,
            &catalog,
            policy,
            args.dry_run,
            chrono::Utc::now(),
        )?);
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &done)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for p in &done {
                print_pruned(&mut out, p)?;
            }
        }
    }
    Ok(if done.iter().any(|p| !p.pruned.errors.is_empty()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The valid, not suspended BackupPolicies with retention that `name` chooses (none: all).
fn chosen<'a>(
    report: &'a Report,
    settings: &Settings,
    name: Option<&str>,
) -> anyhow::Result<Vec<&'a BackupPolicy>> {
    let policies: Vec<&BackupPolicy> = report
        .valid_objects()
        .filter_map(|r| match r {
            Resource::BackupPolicy(p) => Some(p),
            _ => None,
        })
        .collect();
    let Some(name) = name else {
        return Ok(policies
            .into_iter()
            .filter(|p| p.spec.retention.is_some() && !p.spec.suspend)
            .collect());
    };
    let Some(policy) = policies.into_iter().find(|p| p.metadata.name == name) else {
        // Named but not valid: retention never runs for a spec that failed validation.
        let invalid = report.files.iter().flat_map(|f| f.objects.iter()).any(|o| {
            o.name.as_deref() == Some(name) && o.kind == Some(crate::spec::Kind::BackupPolicy)
        });
        if invalid {
            bail!(
                "BackupPolicy `{name}` is invalid, so its retention is not applied; `holdfast validate` says why"
            );
        }
        bail!(
            "no BackupPolicy named `{name}` in {}",
            settings.specs.display()
        );
    };
    if policy.spec.retention.is_none() {
        bail!("BackupPolicy `{name}` has no spec.retention: it keeps every archive");
    }
    if policy.spec.suspend {
        bail!(
            "BackupPolicy `{name}` is suspended (spec.suspend), and its archives are left alone; resume it to prune"
        );
    }
    Ok(vec![policy])
}

/// Applies `policy`'s retention to its archives in `catalog` (a dry run when `dry_run`
/// or the policy's own `retention.dryRun` says so). Call it with the state folder's lock
/// and the repository's writers' lock held, unless a dry run.
pub fn apply(
    state: &crate::state::StateDb,
    repo: &crate::repo::Repository,
    catalog: &Catalog,
    policy: &BackupPolicy,
    dry_run: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<PolicyPruned> {
    let name = &policy.metadata.name;
    let mut rules = policy.spec.retention.clone().unwrap_or_default();
    rules.dry_run |= dry_run;
    let tz = crate::repo::prune::zone(&policy.spec);
    let pruned =
        crate::repo::prune::prune(state, repo, &catalog.group(name), name, &rules, tz, now)?;
    Ok(PolicyPruned {
        policy: name.clone(),
        pruned,
    })
}

/// `deleted <id> (<reason>)` for each archive retention forgot, `would delete` in a dry
/// run, and the errors.
pub fn print_pruned(out: &mut impl Write, p: &PolicyPruned) -> std::io::Result<()> {
    let verb = if p.pruned.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for id in &p.pruned.forgotten {
        let reason = p
            .pruned
            .decisions
            .iter()
            .find(|d| &d.id == id)
            .map(|d| d.reasons.join(", "))
            .unwrap_or_default();
        writeln!(out, "{verb} {id} ({}: {reason})", p.policy)?;
    }
    if p.pruned.forgotten.is_empty() {
        let kept = p.pruned.decisions.iter().filter(|d| d.keep).count();
        writeln!(
            out,
            "{}: nothing to delete ({kept} archive(s) kept)",
            p.policy
        )?;
    }
    if let Some(freed) = p.pruned.freed_bytes {
        writeln!(
            out,
            "{}: the restic repository freed {}",
            p.policy,
            super::plan::human_bytes(freed)
        )?;
    }
    for e in &p.pruned.errors {
        writeln!(out, "error: {}: {e}", p.policy)?;
    }
    Ok(())
}
