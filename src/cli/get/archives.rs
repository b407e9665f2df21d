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
    // With a state folder, the run history joins in: the archives it records that are
    // gone from the repository are listed as Missing. Read-only: listing records nothing.
    if let Some(state) = super::state(settings)? {
        all.extend(catalog::missing(&state, repository.name(), &all)?);
    }
    let entries: Vec<Entry> = all
        .into_iter()
        .filter(|e| args.policy.as_ref().is_none_or(|p| &e.group == p))
        .filter(|e| !args.orphaned || !known.contains(&e.group))
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
    super::print(
        args.output,
        &entries,
        &["ID", "POLICY", "TIME", "SIZE", "HEALTH", "KEPT BY", "NOTE"],
        &["KIND", "HOST", "PHASE", "VERIFIED", "ADDED", "DEDUP"],
        |e| {
            (
                vec![
                    e.id.clone(),
                    e.policy.clone().unwrap_or_else(|| e.group.clone()),
                    e.time.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                    crate::cli::plan::human_bytes(e.bytes),
                    format!("{:?}", e.health),
                    kept_by.get(&e.id).cloned().unwrap_or_default(),
                    if !specs_known || known.contains(&e.group) {
                        String::new()
                    } else {
                        "orphaned".into()
                    },
                ],
                vec![
                    super::or_dash(e.kind.clone()),
                    super::or_dash(Some(e.host.clone())),
                    super::or_dash(e.phase.map(|p| format!("{p:?}"))),
                    super::or_dash(
                        e.verified
                            .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()),
                    ),
                    // What a restic archive added to its repository, and how many times
                    // over its sources deduplication and compression stored it.
                    super::or_dash(e.added_bytes.map(crate::cli::plan::human_bytes)),
                    super::or_dash(e.dedup_ratio.map(|r| format!("{r}x"))),
                ],
            )
        },
    )?;
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
    if specs_known && entries.iter().any(|e| !known.contains(&e.group)) {
        eprintln!(
            "orphaned: no BackupPolicy or Archive under {} names it; holdfast keeps it, `holdfast delete` removes it on purpose",
            settings.specs.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
