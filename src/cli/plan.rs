use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::{OutputFormat, specs};
use crate::docker::engine::Engine;
use crate::executor::resolve::{BackupPlan, resolve};
use crate::executor::space::Space;
use crate::executor::{BackupRequest, effective_level};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The BackupPolicy or Archive to plan; all of them when omitted.
    name: Option<String>,

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
    pub(super) host_labels: crate::settings::HostLabelsFlag,

    #[command(flatten)]
    pub(super) docker: crate::settings::DockerFlags,
}

pub fn run(settings: &Settings, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let mut report = specs::load(settings);
    for line in specs::select_host(&mut report, &crate::validate::HostView::of(settings)) {
        eprintln!("{line}");
    }
    // Any error printed fails the command, even when the valid specs could be planned.
    let mut invalid = false;
    let requests = match &args.name {
        Some(name) => vec![specs::backup_request(&report, settings, name)?],
        None => {
            for d in report.diagnostics() {
                eprintln!("{d}");
                invalid = true;
            }
            specs::all_backups(&report)
        }
    };
    if requests.is_empty() {
        eprintln!(
            "nothing to plan: no valid BackupPolicy or Archive ({})",
            super::paths(settings, &[super::Path::Specs])
        );
    }
    let runtime = super::runtime()?;
    let plans: Vec<(BackupRequest, BackupPlan, Option<Space>)> = runtime.block_on(async {
        if requests.is_empty() {
            return anyhow::Ok(Vec::new());
        }
        let engine = Engine::open(&settings.docker).await?;
        // Planning changes nothing: the state is only read, and a missing one is empty.
        let executor = super::read_only_executor(settings, engine)?;
        super::warn_left_stopped(settings, &executor.state())?;
        let mut observed = executor.observe().await?;
        anyhow::Ok(
            requests
                .into_iter()
                .map(|r| {
                    crate::executor::project::observe_host(&r.spec.targets, &mut observed);
                    let plan = resolve(&r.spec, &observed);
                    let space = executor.space(&r.name, &r.spec, &plan);
                    (r, plan, space)
                })
                .collect(),
        )
    })?;
    let failed = invalid || plans.iter().any(|(_, p, _)| !p.errors.is_empty());
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
                .map(|(r, p, space)| {
                    let need = space.as_ref().and_then(|s| s.need.as_ref());
                    serde_json::json!({
                        "kind": r.kind.to_string(),
                        "name": r.name,
                        "format": r.output.format.to_string(),
                        "level": effective_level(&r.output),
                        "estimatedBytes": need.map(|n| n.bytes),
                        "estimateBasis": need.map(|n| n.basis.clone()),
                        "repositoryFreeBytes": space.as_ref().and_then(|s| s.free.as_ref().ok()),
                        "retentionWouldForget": forget.get(&r.name).map(|f| f.iter().map(|(id, why)| serde_json::json!({"id": id, "reason": why})).collect::<Vec<_>>()),
                        "plan": p,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &items)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for (r, p, space) in &plans {
                print_plan(&mut out, r, p, space.as_ref())?;
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

fn print_plan(
    out: &mut impl Write,
    r: &BackupRequest,
    p: &BackupPlan,
    space: Option<&Space>,
) -> std::io::Result<()> {
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
    for project in &p.projects {
        writeln!(
            out,
            "  compose project {} in {} ({}): {}",
            project.project,
            project.path,
            project.files.join(", "),
            if project.containers.is_empty() {
                "no containers: nothing to stop".to_string()
            } else {
                format!(
                    "containers {}, backed up as its stack",
                    project.containers.join(", ")
                )
            }
        )?;
    }
    for h in &p.paths {
        writeln!(
            out,
            "  host folder {}{}{}",
            h.path,
            match &h.stack {
                Some(stack) => format!(" (bind mount of compose project {stack})"),
                None => String::new(),
            },
            if h.mounted_by.is_empty() {
                String::new()
            } else {
                format!(", mounted by {}", h.mounted_by.join(", "))
            }
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
        if p.stop_order.len() > 1 {
            writeln!(
                out,
                "  stop order: {}",
                crate::executor::order::describe(&p.stop_order_basis)
            )?;
        }
    }
    for w in &p.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    for s in &p.skipped {
        writeln!(out, "  skipped {}: {}", s.what, s.reason)?;
    }
    match space {
        Some(Space {
            repository,
            need: Some(need),
            free,
        }) => {
            writeln!(
                out,
                "  estimated size: {} ({})",
                human_bytes(need.bytes),
                need.basis
            )?;
            match free {
                Ok(free) if need.bytes > *free => writeln!(
                    out,
                    "  does not fit: {} free in the repository {}; a run fails before it stops anything",
                    human_bytes(*free),
                    repository.display()
                )?,
                Ok(free) => writeln!(
                    out,
                    "  fits: {} free in the repository {}",
                    human_bytes(*free),
                    repository.display()
                )?,
                Err(e) => writeln!(
                    out,
                    "  free space in {}: unknown ({e})",
                    repository.display()
                )?,
            }
        }
        Some(Space { need: None, .. }) => writeln!(
            out,
            "  estimated size: unknown (some data is only reachable through Docker, and no earlier archive tells)"
        )?,
        None => {}
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

pub use crate::executor::space::human_bytes;
