use std::io::Write;

use anyhow::bail;
use std::process::ExitCode;

use super::{Format, GetArgs};
use crate::cli::Path;
use crate::repo::catalog::{self, Entry};
use crate::settings::Settings;
use crate::spec::Resource;

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    // Without the specs, which archives are orphaned is unknown, not "all of them".
    let specs_known = settings.specs.exists();
    if !specs_known {
        if args.orphaned {
            bail!(
                "no specs folder at {}: which archives are orphaned is unknown; name it with --specs",
                settings.specs.display()
            );
        }
        eprintln!(
            "warning: no specs folder at {}: archives are not marked orphaned",
            settings.specs.display()
        );
    }
    let report = crate::cli::specs::load(settings);
    let known: Vec<String> = report
        .files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter(|o| !matches!(o.resource, Some(Resource::Restore(_))))
        .filter_map(|o| o.name.clone())
        .collect();
    let repository = crate::cli::repository_named(settings)?;
    let mut all = catalog::scan(&repository)?;
    let catalog = catalog::Catalog::from_entries(all.clone());
    let own_host = repository.host().to_string();
    for e in &mut all {
        if e.host.is_empty() {
            e.host = own_host.clone();
        }
    }
    // With a state folder, the run history joins in: the archives it records that are
    // gone from the repository are listed as Missing. Read-only: listing records nothing.
    if let Some(state) = super::state(settings)? {
        all.extend(catalog::missing(&state, repository.name(), &all)?);
    }
    // Other hosts' folders, read as those hosts see them; nothing of theirs is locked.
    if args.all_hosts {
        for host in repository.storage().hosts()? {
            if host == own_host {
                continue;
            }
            let theirs = crate::cli::repository_of(settings, &host)?;
            all.extend(catalog::scan(&theirs)?.into_iter().map(|mut e| {
                e.host = host.clone();
                e
            }));
        }
    }
    let entries: Vec<Entry> = all
        .into_iter()
        .filter(|e| args.policy.as_ref().is_none_or(|p| &e.group == p))
        .filter(|e| !args.orphaned || (e.host == own_host && !known.contains(&e.group)))
        .collect();
    // Why each archive is kept (or would go), for groups whose policy has retention.
    let mut kept_by: std::collections::BTreeMap<String, String> = Default::default();
    for (_, decisions) in
        crate::repo::prune::decide_all(&catalog, report.valid_objects(), chrono::Utc::now())
    {
        for d in decisions {
            let text = if d.keep {
                d.reasons.join(", ")
            } else {
                format!("forget next: {}", d.reasons.join(", "))
            };
            kept_by.insert(d.id, text);
        }
    }
    // With every host's archives the host is what matters most: it leads the narrow table.
    let (mut header, mut wide): (Vec<&str>, Vec<&str>) = (
        vec!["ID", "POLICY", "TIME", "SIZE", "HEALTH", "KEPT BY", "NOTE"],
        vec!["KIND", "HOST", "PHASE", "VERIFIED", "ADDED", "DEDUP"],
    );
    if args.all_hosts {
        header.insert(0, "HOST");
        wide.retain(|h| *h != "HOST");
    }
    super::print(args.output, &entries, &header, &wide, |e| {
        let mut narrow = Vec::new();
        let mut more = Vec::new();
        if args.all_hosts {
            narrow.push(e.host.clone());
        } else {
            more.push(super::or_dash(Some(e.host.clone())));
        }
        // Retention is this host's: another host's archives go by that host's specs.
        let kept = if e.host == own_host {
            kept_by.get(&e.id).cloned().unwrap_or_default()
        } else {
            String::new()
        };
        narrow.extend([
            e.id.clone(),
            e.policy.clone().unwrap_or_else(|| e.group.clone()),
            e.time.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            crate::cli::plan::human_bytes(e.bytes),
            format!("{:?}", e.health),
            kept,
            if !specs_known || known.contains(&e.group) || e.host != own_host {
                String::new()
            } else {
                "orphaned".into()
            },
        ]);
        more.splice(0..0, [super::or_dash(e.kind.clone())]);
        more.extend([
            super::or_dash(e.phase.map(|p| format!("{p:?}"))),
            super::or_dash(
                e.verified
                    .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()),
            ),
            // What a restic archive added to its repository, and how many times
            // over its sources deduplication and compression stored it.
            super::or_dash(e.added_bytes.map(crate::cli::plan::human_bytes)),
            super::or_dash(e.dedup_ratio.map(|r| format!("{r}x"))),
        ]);
        (narrow, more)
    })?;
    if matches!(args.output, Format::Table | Format::Wide) {
        let mut out = std::io::stdout().lock();
        for e in entries.iter().filter(|e| !e.problems.is_empty()) {
            writeln!(out, "{}: {}", e.id, e.problems.join("; "))?;
        }
    }
    if entries.is_empty() {
        eprintln!(
            "no archives ({})",
            crate::cli::paths(settings, &[Path::Repository, Path::State])
        );
    }
    if specs_known
        && entries
            .iter()
            .any(|e| e.host == own_host && !known.contains(&e.group))
    {
        eprintln!(
            "orphaned: no BackupPolicy or Archive under {} names it; holdfast keeps it, `holdfast delete` removes it on purpose",
            settings.specs.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
