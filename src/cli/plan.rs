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
    /// The BackupPolicy, Archive or ContainerSchedule to plan; all of them when omitted.
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
    let schedules: Vec<crate::spec::ContainerSchedule> = report
        .valid_objects()
        .filter_map(|r| match r {
            crate::spec::Resource::ContainerSchedule(c) => Some(c.clone()),
            _ => None,
        })
        .filter(|c| args.name.as_ref().is_none_or(|n| *n == c.metadata.name))
        .collect();
    let requests = match &args.name {
        // A ContainerSchedule of that name is planned alone.
        Some(_) if !schedules.is_empty() => Vec::new(),
        Some(name) => vec![specs::backup_request(&report, settings, name)?],
        None => {
            for d in report.diagnostics() {
                eprintln!("{d}");
                invalid = true;
            }
            specs::all_backups(&report)
        }
    };
    if requests.is_empty() && schedules.is_empty() {
        eprintln!(
            "nothing to plan: no valid BackupPolicy, Archive or ContainerSchedule ({})",
            super::paths(settings, &[super::Path::Specs])
        );
    }
    let runtime = super::runtime()?;
    type Plans = (
        Vec<(BackupRequest, BackupPlan, Option<Space>)>,
        Vec<ActionPlan>,
    );
    let (plans, actions): Plans = runtime.block_on(async {
        if requests.is_empty() && schedules.is_empty() {
            return anyhow::Ok((Vec::new(), Vec::new()));
        }
        let engine = Engine::open(&settings.docker).await?;
        // Planning changes nothing: the state is only read, and a missing one is empty.
        let executor = super::read_only_executor(settings, engine)?;
        super::warn_left_stopped(settings, &executor.state())?;
        let mut observed = executor.observe().await?;
        let actions = schedules
            .iter()
            .map(|s| ActionPlan::of(s, &observed.containers))
            .collect();
        anyhow::Ok((
            requests
                .into_iter()
                .map(|r| {
                    crate::executor::project::observe_host(&r.spec.targets, &mut observed);
                    let plan = resolve(&r.spec, &observed);
                    let space = executor.space(&r.name, &r.spec, &plan);
                    (r, plan, space)
                })
                .collect(),
            actions,
        ))
    })?;
    let failed = invalid
        || plans.iter().any(|(_, p, _)| !p.errors.is_empty())
        || actions.iter().any(|a| !a.errors.is_empty());
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
            let mut items: Vec<serde_json::Value> = plans
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
            items.extend(actions.iter().map(|a| serde_json::json!(a)));
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
            for a in &actions {
                a.print(&mut out)?;
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

/// What a ContainerSchedule's action would do now: each container its targets select,
/// its state, and whether the action would change it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ActionPlan {
    kind: &'static str,
    name: String,
    action: crate::spec::ContainerAction,
    /// The cron schedule, or `at <runAt>`.
    when: String,
    after: Vec<String>,
    containers: Vec<ActionTarget>,
    errors: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ActionTarget {
    name: String,
    state: String,
    /// False when it already is as the action asks (a running container to start).
    acts: bool,
}

impl ActionPlan {
    fn of(schedule: &crate::spec::ContainerSchedule, all: &[crate::docker::ContainerInfo]) -> Self {
        let spec = &schedule.spec;
        let (chosen, errors) = crate::actions::select(&spec.targets, all);
        let zone = spec.timezone.as_ref().map_or("UTC", |z| z.0.as_str());
        ActionPlan {
            kind: "ContainerSchedule",
            name: schedule.metadata.name.clone(),
            action: spec.action,
            when: match (&spec.schedule, &spec.run_at) {
                (Some(cron), _) => format!("{} ({zone})", cron.0),
                (None, Some(at)) => format!("at {}", at.0),
                (None, None) => String::new(),
            },
            after: spec.after.clone(),
            containers: chosen
                .iter()
                .map(|c| ActionTarget {
                    name: c.name.clone(),
                    state: c.state.clone(),
                    acts: crate::actions::step(spec.action, &c.state).is_some(),
                })
                .collect(),
            errors,
        }
    }

    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "{}/{}", self.kind, self.name)?;
        writeln!(out, "  {} {}", self.action, self.when)?;
        if !self.after.is_empty() {
            writeln!(out, "  after each succeeded: {}", self.after.join(", "))?;
        }
        if self.containers.is_empty() {
            writeln!(out, "  containers: none")?;
        }
        for c in &self.containers {
            let what = if c.acts {
                format!("would {}", self.action)
            } else {
                "left alone".to_string()
            };
            writeln!(out, "  container {} ({}): {what}", c.name, c.state)?;
        }
        for e in &self.errors {
            writeln!(out, "  error: {e}")?;
        }
        Ok(())
    }
}
