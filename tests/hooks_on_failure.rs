//! `consistency.hooks.onFailure: skipTarget` against real containers: a pre hook that
//! fails, or runs past its timeout, leaves out only its own target; the rest is backed
//! up, stopped and started as usual, and the run says what it left out and why.

mod common;

use std::fs;
use std::process::Command;

use common::env::Env;
use common::*;
use serde_json::Value;

/// A busybox container `name` with the volume `name` at /data, in the Compose project
/// `stack` when one is given; removed with its volume when dropped.
struct Target {
    name: String,
}

impl Target {
    fn start(name: String, stack: Option<&str>) -> Target {
        let target = Target { name };
        target.remove();
        docker(&["volume", "create", &target.name]);
        let mut labels = Vec::new();
        if let Some(stack) = stack {
            labels.extend([
                "--label".to_string(),
                format!("com.docker.compose.project={stack}"),
                "--label".to_string(),
                "com.docker.compose.service=app".to_string(),
            ]);
        }
        let volume = format!("{}:/data", target.name);
        let mut args = vec!["run", "-d", "--init", "--name", &target.name, "-v", &volume];
        args.extend(labels.iter().map(String::as_str));
        args.extend([
            "holdfast-test/busybox:1",
            "sh",
            "-c",
            "echo kept > /data/file; trap 'exit 0' TERM; while :; do sleep 1; done",
        ]);
        docker(&args);
        target
    }

    fn started_at(&self) -> String {
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &self.name])
            .trim()
            .to_string()
    }

    fn state(&self) -> String {
        docker(&["inspect", "-f", "{{.State.Status}}", &self.name])
            .trim()
            .to_string()
    }

    fn remove(&self) {
        let _ = run(Command::new("docker").args(["rm", "-f", &self.name]));
        let _ = run(Command::new("docker").args(["volume", "rm", "-f", &self.name]));
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.remove();
    }
}

fn backup(env: &Env, name: &str) -> (std::process::Output, Value) {
    let out = run(env.holdfast().args(["backup", name, "-o", "json"]));
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out, outcome)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_failing_pre_hook_leaves_out_only_its_own_target() {
    if !docker_available() {
        return;
    }
    let pid = std::process::id();
    let (sa, sb) = (format!("hfskipa{pid}"), format!("hfskipb{pid}"));
    // Stack a's hook fails, stack b's succeeds, and the lone container's runs too long.
    let a = Target::start(format!("{sa}_app_1"), Some(&sa));
    let b = Target::start(format!("{sb}_app_1"), Some(&sb));
    let lone = Target::start(format!("hfskipc{pid}"), None);
    let env = Env::new();
    let policy = |name: &str, on_failure: &str, b_hook: &str| {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:
  schedule: '0 3 1 1 *'
  targets: {{stacks: [{sa}, {sb}], containers: [{lone}]}}
  include: {{recipe: false}}
  consistency:
    stop: stack
    stopTimeout: 5s
    hooks:
{on_failure}      pre:
        - {{exec: {{container: {a}, command: [sh, -c, 'echo database locked >&2; exit 4']}}}}
        - {{exec: {{container: {a}, command: [touch, /data/second-hook-ran]}}}}
        - {{exec: {{container: {b}, command: [sh, -c, '{b_hook}']}}}}
        - {{exec: {{container: {lone}, command: [sleep, '30'], timeout: 1s}}}}
      post:
        - {{exec: {{container: {a}, command: [touch, /data/post-hook-ran]}}}}
",
            lone = lone.name,
            a = a.name,
            b = b.name,
        )
    };
    env.spec(
        "skip",
        &policy(
            "skip",
            "      onFailure: skipTarget\n",
            "touch /data/pre-hook-ran",
        ),
    );
    let before = (a.started_at(), b.started_at(), lone.started_at());
    let (out, outcome) = backup(&env, "skip");
    assert_eq!(out.status.code(), Some(1), "{outcome:#}{}", stderr(&out));
    assert_eq!(outcome["phase"], "PartiallyFailed", "{outcome:#}");

    // Only stack b is in the archive; it was stopped and started again.
    let manifests = env.manifests();
    assert_eq!(manifests.len(), 1, "{outcome:#}");
    let manifest: Value = serde_json::from_slice(&fs::read(&manifests[0]).unwrap()).unwrap();
    let sources: Vec<&str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, [b.name.as_str()], "{manifest:#}");
    assert_eq!(manifest["targets"]["stacks"], serde_json::json!([sb]));
    assert_ne!(b.started_at(), before.1, "stack b was not stopped");
    // The targets left out were neither stopped nor left stopped.
    for t in [&a, &b, &lone] {
        assert_eq!(t.state(), "running", "{}", t.name);
    }
    assert_eq!(a.started_at(), before.0, "stack a was stopped");
    assert_eq!(
        lone.started_at(),
        before.2,
        "the lone container was stopped"
    );
    // The hooks after a's failing one are a's no more, the others ran; post hooks run.
    sh_in(&b.name, "test -f /data/pre-hook-ran");
    sh_in(
        &a.name,
        "test ! -e /data/second-hook-ran && test -f /data/post-hook-ran",
    );

    // The run says which targets were left out and why: outcome, history, manifest, log.
    let errors: Vec<&str> = outcome["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("stack {sa} was left out of the backup"))
            && errors[0].contains("exit code 4")
            && errors[0].contains("database locked"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with(&format!("container {} was left out", lone.name)),
        "{}",
        errors[1]
    );
    let skipped: Vec<&str> = outcome["plan"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["what"].as_str().unwrap())
        .collect();
    assert!(
        skipped.contains(&format!("stack {sa}").as_str()),
        "{skipped:?}"
    );
    let warnings = manifest["warnings"].to_string();
    assert!(
        warnings.contains(&format!("stack {sa} was left out")),
        "{warnings}"
    );
    let runs = run(env.holdfast().args(["get", "runs", "-o", "json"]));
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let recorded = runs[0].to_string();
    assert!(
        recorded.contains("PartiallyFailed")
            && recorded.contains(&format!("stack {sa} was left out")),
        "{runs:#}"
    );
    let run_id = outcome["runId"].as_str().unwrap();
    let log = fs::read_to_string(env.state.join("logs").join(format!("{run_id}.log"))).unwrap();
    assert!(
        log.contains(&format!("leaving stack {sa} out of the backup")),
        "{log}"
    );

    // The default, failRun: the first failing hook fails the run, nothing is stopped.
    env.spec("fail", &policy("fail", "", "touch /data/pre-hook-ran"));
    let before = b.started_at();
    let (_, outcome) = backup(&env, "fail");
    assert_eq!(outcome["phase"], "Failed", "{outcome:#}");
    assert_eq!(env.manifests().len(), 1, "a failed run left an archive");
    assert_eq!(b.started_at(), before);

    // Every target left out: nothing to archive, so the run failed.
    env.spec(
        "none",
        &policy("none", "      onFailure: skipTarget\n", "exit 5"),
    );
    let (_, outcome) = backup(&env, "none");
    assert_eq!(outcome["phase"], "Failed", "{outcome:#}");
    assert_eq!(
        outcome["errors"].as_array().unwrap().len(),
        3,
        "{outcome:#}"
    );
    assert_eq!(env.manifests().len(), 1, "a failed run left an archive");
    assert_eq!(b.started_at(), before, "stack b was stopped for nothing");
}
