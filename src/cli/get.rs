use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::repo::catalog::{self, Entry};
use crate::settings::Settings;
use crate::spec::Resource;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list.
    what: What,

    /// Only the archives of this policy (or Archive spec).
    #[arg(long, value_name = "NAME")]
    policy: Option<String>,

    /// Only archives whose policy or Archive spec is gone from the specs folder. They are
    /// kept: a vanished file is not consent to delete data.
    #[arg(long)]
    orphaned: bool,

    /// `table` for people, `json` or `yaml` for scripts.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    /// The archives in the repository, read from their manifests.
    Archives,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Yaml,
}

pub fn run(settings: &Settings, args: GetArgs) -> anyhow::Result<ExitCode> {
    let What::Archives = args.what;
    let report = super::specs::load(settings);
    let known: Vec<String> = report
        .files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter(|o| !matches!(o.resource, Some(Resource::Restore(_))))
        .filter_map(|o| o.name.clone())
        .collect();
    let mut all = catalog::scan(&super::repository(settings))?;
    let catalog = catalog::Catalog::from_entries(all.clone());
    // With a state folder, the run history joins in: adopted archives, and Missing ones.
    if settings.state.join("holdfast.db").exists() {
        let state = crate::state::StateDb::open(&settings.state)?;
        all.extend(catalog::reconcile_history(&state, &all)?);
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
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &entries)?;
            writeln!(out)?;
        }
        Format::Yaml => write!(out, "{}", serde_yaml_ng::to_string(&entries)?)?,
        Format::Table => {
            let rows: Vec<[String; 7]> = entries
                .iter()
                .map(|e| {
                    [
                        e.id.clone(),
                        e.policy.clone().unwrap_or_else(|| e.group.clone()),
                        e.time.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                        super::plan::human_bytes(e.bytes),
                        format!("{:?}", e.health),
                        kept_by.get(&e.id).cloned().unwrap_or_default(),
                        if known.contains(&e.group) {
                            String::new()
                        } else {
                            "orphaned".into()
                        },
                    ]
                })
                .collect();
            let header =
                ["ID", "POLICY", "TIME", "SIZE", "HEALTH", "KEPT BY", "NOTE"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
            for e in entries.iter().filter(|e| !e.problems.is_empty()) {
                writeln!(out, "{}: {}", e.id, e.problems.join("; "))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
