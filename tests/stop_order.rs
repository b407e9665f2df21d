//! The order a backup stops and starts a stack's containers: those that depend on others
//! first, and started again in reverse. Compose v1 labels no dependencies, so they come
//! from the compose file; `consistency.stopOrder` overrides both.

mod common;

use std::fs;
use std::path::Path;

use chrono::{DateTime, FixedOffset};
use common::env::Env;
use common::{ComposeStack, docker, docker_available, docker_lock, run, stderr, stdout};
use serde_json::Value;

/// A stack where `app` depends on `postgres` (list form) and `web` on `app` (mapping
/// form). By name alone it would stop web, postgres, app: the database before its app.
fn compose_text() -> String {
    let forever = r#"command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]"#;
    format!(
        "version: \"2.4\"\nservices:\n  postgres:\n    image: holdfast-test/busybox:1\n    {forever}\n    volumes: [data:/data]\n  app:\n    image: holdfast-test/busybox:1\n    {forever}\n    depends_on: [postgres]\n  web:\n    image: holdfast-test/busybox:1\n    {forever}\n    depends_on:\n      app: {{condition: service_started}}\nvolumes:\n  data: {{}}\n"
    )
}

fn policy(name: &str, project: &str, consistency: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  schedule: '@daily'\n  targets: {{stacks: [{project}]}}\n  consistency: {{stop: stack, stopTimeout: 5s, waitHealthy: 30s{consistency}}}\n"
    )
}

fn plan(env: &Env, name: &str) -> String {
    let out = run(env.holdfast().args(["plan", name]));
    assert!(
        out.status.success(),
        "plan {name} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// When Docker last started and last stopped a container.
fn started_finished(container: &str) -> (DateTime<FixedOffset>, DateTime<FixedOffset>) {
    let text = docker(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}} {{.State.FinishedAt}}",
        container,
    ]);
    let (started, finished) = text.trim().split_once(' ').unwrap();
    let parse = |t: &str| DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    (parse(started), parse(finished))
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_compose_v1_stack_stops_dependents_first_and_starts_them_last() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfso{}", std::process::id());
    let env = Env::new();
    let folder = env.dir.path().join("stack");
    fs::create_dir(&folder).unwrap();
    let file = folder.join("docker-compose.yml");
    fs::write(&file, compose_text()).unwrap();
    let stack = ComposeStack::up_file(&file, &project);
    stack.wait_healthy();
    let [postgres, app, web] = ["postgres", "app", "web"].map(|s| stack.container(s));
    // Compose v1 records no dependencies on the containers: the file is the only source.
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &app]);
    assert!(
        labels.contains("com.docker.compose.project") && !labels.contains("depends_on"),
        "not a Compose v1 stack: {labels}"
    );

    env.spec("ordered", &policy("ordered", &project, ""));
    let text = plan(&env, "ordered");
    assert!(
        text.contains(&format!(
            "  stops, in order: {web}, {app}, {postgres} (and starts them again in reverse)\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  stop order: from the compose file {} (stack {project})\n",
            file.display()
        )),
        "{text}"
    );

    // A stated order wins; what it does not name stops after it, in dependency order.
    env.spec(
        "stated",
        &policy("stated", &project, ", stopOrder: [postgres, nosuch]"),
    );
    let text = plan(&env, "stated");
    assert!(
        text.contains(&format!("  stops, in order: {postgres}, {web}, {app} (and")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  stop order: from consistency.stopOrder, then from the compose file {} (stack {project})\n",
            file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  warning: consistency.stopOrder names `nosuch`, which is none of the containers this run stops ({web}, {app}, {postgres}) nor their services\n"
        )),
        "{text}"
    );
    fs::remove_file(env.specs.join("stated.yaml")).unwrap();

    // An unreadable compose file costs the order, never the plan.
    let aside = folder.join("aside.yml");
    fs::rename(&file, &aside).unwrap();
    let text = plan(&env, "ordered");
    fs::rename(&aside, &file).unwrap();
    assert!(
        text.contains(&format!(
            "  stops, in order: {web}, {postgres}, {app} (and starts them again in reverse)\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  warning: the stop order of stack {project} ignores its compose files, so it goes by name: {} could not be read",
            file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("  stop order: by name (stack {project})\n")),
        "{text}"
    );

    // A real run stops web, app, postgres and starts postgres, app, web.
    let out = run(env.holdfast().args(["backup", "ordered", "-o", "json"]));
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(
        outcome["phase"],
        "Succeeded",
        "{outcome:#}\n{}",
        stderr(&out)
    );
    let [p, a, w] = [&postgres, &app, &web].map(|c| started_finished(c));
    assert!(
        w.1 < a.1 && a.1 < p.1,
        "stopped at: web {w:?}, app {a:?}, postgres {p:?}"
    );
    assert!(
        p.0 < a.0 && a.0 < w.0,
        "started at: postgres {p:?}, app {a:?}, web {w:?}"
    );
    assert!(p.0 > w.1, "postgres started before web stopped");

    // An in-place restore of the stack stops and starts them in the same order.
    let id = outcome["archiveId"]
        .as_str()
        .expect("the backup's archive id");
    let out = run(env.holdfast().args([
        "restore", "--from", id, "--stack", &project, "--mode", "InPlace", "--stop", "stack",
    ]));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let [p, a, w] = [&postgres, &app, &web].map(|c| started_finished(c));
    assert!(
        w.1 < a.1 && a.1 < p.1,
        "the restore stopped at: web {w:?}, app {a:?}, postgres {p:?}"
    );
    assert!(
        p.0 < a.0 && a.0 < w.0,
        "the restore started at: postgres {p:?}, app {a:?}, web {w:?}"
    );
    drop(stack);
    assert!(Path::new(&file).exists());
}
