use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::{OutputFormat, specs};
use crate::docker::engine::Engine;
use crate::executor::resolve::{BackupPlan, resolve};
use crate::executor::{BackupRequest, effective_level};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The BackupPolicy or Archive to plan; all of them when omitted.
    name: Option<String>,

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(settings: &Settings, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let report = specs::load(settings);
    let requests = match &args.name {
        Some(name) => vec![specs::backup_request(&report, settings, name)?],
        None => {
            for d in report.diagnostics() {
                eprintln!("{d}");
            }
            specs::all_backups(&report)
        }
    };
    let runtime = super::runtime()?;
    let plans: Vec<(BackupRequest, BackupPlan)> = runtime.block_on(async {
        let engine = Engine::connect(settings.docker_host.as_deref()).await?;
        let executor = super::executor(settings, engine)?;
        super::replay_if_free(settings, &executor).await;
        let observed = executor.observe().await?;
        anyhow::Ok(
            requests
                .into_iter()
                .map(|r| {
                    let plan = resolve(&r.spec, &observed);
                    (r, plan)
                })
                .collect(),
        )
    })?;
    let failed = plans.iter().any(|(_, p)| !p.errors.is_empty());
    // What retention would forget if it ran now, per policy with retention.
    let mut forget: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    let catalog = crate::repo::Catalog::load(&super::repository(settings))?;
    for (name, decisions) in
        crate::repo::prune::decide_all(&catalog, report.valid_objects(), chrono::Utc::now())
    {
        forget.insert(
            name,
            decisions
                .into_iter()
                .filter(|d| !d.keep)
                .map(|d| (d.id, d.reasons.join(", ")))
                .collect(),
        );
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = plans
                .iter()
                .map(|(r, p)| {
                    serde_json::json!({
                        "kind": r.kind.to_string(),
                        "name": r.name,
                        "format": r.output.format.to_string(),
                        "level": effective_level(&r.output),
                        "estimatedBytes": estimate(p),
                        "retentionWouldForget": forget.get(&r.name).map(|f| f.iter().map(|(id, why)| serde_json::json!({"id": id, "reason": why})).collect::<Vec<_>>()),
                        "plan": p,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &items)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for (r, p) in &plans {
                print_plan(&mut out, r, p)?;
                match forget.get(&r.name) {
                    Some(list) if list.is_empty() => {
                        writeln!(out, "  retention: forgets nothing now")?
                    }
                    Some(list) => {
                        for (id, why) in list {
                            writeln!(out, "  retention would forget {id}: {why}")?;
                        }
                    }
                    None => {}
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Bytes in the folders a run would read from the host, where holdfast can see them.
fn estimate(plan: &BackupPlan) -> Option<u64> {
    let mut total = 0;
    let dirs = plan
        .volumes
        .iter()
        .map(|v| v.mountpoint.clone())
        .chain(plan.binds.iter().map(|b| Some(b.source.clone())));
    for dir in dirs {
        total += dir_size(std::path::Path::new(&dir?))?;
    }
    Some(total)
}

fn dir_size(path: &std::path::Path) -> Option<u64> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).ok()? {
        total += dir_size(&entry.ok()?.path()).unwrap_or(0);
    }
    Some(total)
}

fn print_plan(out: &mut impl Write, r: &BackupRequest, p: &BackupPlan) -> std::io::Result<()> {
    writeln!(out, "{}/{}", r.kind, r.name)?;
    if !p.stacks.is_empty() {
        writeln!(out, "  stacks: {}", p.stacks.join(", "))?;
    }
    if !p.containers.is_empty() {
        let names: Vec<String> = p
            .containers
            .iter()
            .map(|c| format!("{}{}", c.name, if c.running { "" } else { " (stopped)" }))
            .collect();
        writeln!(out, "  containers: {}", names.join(", "))?;
    }
    for v in &p.volumes {
        writeln!(
            out,
            "  volume {} (used by {})",
            v.name,
            if v.used_by.is_empty() {
                "nothing".into()
            } else {
                v.used_by.join(", ")
            }
        )?;
    }
    for b in &p.binds {
        writeln!(
            out,
            "  bind mount {} -> {}:{}",
            b.source, b.container, b.destination
        )?;
    }
    for d in &p.dumps {
        writeln!(out, "  dump {} of {}", d.engine, d.container)?;
    }
    for h in &p.pre_hooks {
        writeln!(
            out,
            "  pre hook in {}: {}",
            h.container,
            h.command.join(" ")
        )?;
    }
    for h in &p.post_hooks {
        writeln!(
            out,
            "  post hook in {}: {}",
            h.container,
            h.command.join(" ")
        )?;
    }
    if p.stop_order.is_empty() {
        writeln!(out, "  stops nothing")?;
    } else {
        let names: Vec<&str> = p.stop_order.iter().map(|c| c.name.as_str()).collect();
        writeln!(
            out,
            "  stops, in order: {} (and starts them again in reverse)",
            names.join(", ")
        )?;
    }
    for s in &p.skipped {
        writeln!(out, "  skipped {}: {}", s.what, s.reason)?;
    }
    match estimate(p) {
        Some(bytes) => writeln!(
            out,
            "  estimated size before compression: {}",
            human_bytes(bytes)
        )?,
        None => writeln!(
            out,
            "  estimated size: unknown (some data is only reachable through Docker)"
        )?,
    }
    match effective_level(&r.output) {
        Some(level) => writeln!(out, "  output: {} at level {level}", r.output.format)?,
        None => writeln!(out, "  output: {}", r.output.format)?,
    }
    for e in &p.errors {
        writeln!(out, "  error: {e}")?;
    }
    Ok(())
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
