//! Checks the monitoring files that operators copy from `examples/`: the Prometheus alert
//! rules, their unit tests and scrape config (with promtool), and the Grafana dashboard.
//! A query naming a metric that does not exist returns nothing rather than an error, so
//! a renamed metric would leave an alert that never fires; these tests catch that here.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{crate_root, run, stderr, stdout};
use serde_json::Value;

use common::metrics::KNOWN_METRICS;
use common::metrics::MetricType::Histogram;

const ALERTS: &str = "examples/prometheus/alerts.yaml";
const ALERTS_TEST: &str = "examples/prometheus/alerts.test.yaml";
const PROMETHEUS_CONFIG: &str = "examples/prometheus/prometheus.yml";
const DASHBOARD: &str = "examples/grafana/holdfast.json";

fn is_metric_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Every `holdfast_...` identifier in a text, in order. The whole identifier is taken,
/// not just `[a-z_]`, so that a stray capital or digit makes an unknown name rather than
/// a shorter known one.
fn metric_names(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("holdfast_") {
        let start = from + found;
        let mut end = start + "holdfast_".len();
        while end < bytes.len() && is_metric_char(bytes[end]) {
            end += 1;
        }
        if start == 0 || !is_metric_char(bytes[start - 1]) {
            names.push(&text[start..end]);
        }
        from = end;
    }
    names
}

/// Whether a series name exists: a known metric, or one of the `_bucket`, `_count` and
/// `_sum` series of a known histogram.
fn is_known(name: &str) -> bool {
    if KNOWN_METRICS.iter().any(|(known, _)| *known == name) {
        return true;
    }
    ["_bucket", "_count", "_sum"].iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|base| {
            KNOWN_METRICS
                .iter()
                .any(|(known, kind)| *known == base && *kind == Histogram)
        })
    })
}

fn unknown_metrics(text: &str) -> BTreeSet<&str> {
    metric_names(text)
        .into_iter()
        .filter(|name| !is_known(name))
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(crate_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn metric_name_extraction() {
    // The checks below are only as good as this: a scanner that found nothing would pass
    // every file.
    assert_eq!(
        metric_names(
            "sum(rate(holdfast_runs_total{name=~\"$name\"}[5m])) / \
             holdfast_run_duration_seconds_bucket and not_holdfast_x, holdfast_Typo"
        ),
        [
            "holdfast_runs_total",
            "holdfast_run_duration_seconds_bucket",
            "holdfast_Typo"
        ]
    );
    assert!(is_known("holdfast_runs_total"));
    assert!(is_known("holdfast_run_duration_seconds_count"));
    assert!(is_known("holdfast_reconcile_duration_seconds_bucket"));
    // Only histograms have these series.
    assert!(!is_known("holdfast_archives_count"));
    assert!(!is_known("holdfast_runs"));
    assert!(!is_known("holdfast_Typo"));
}

/// Whether promtool is installed: true, or a panic. Missing is a failure, not a skip: with
/// `HOLDFAST_SKIP_DOCKER=1` the tests that need it are reported as ignored instead (see
/// build.rs); scripts/test-env.sh installs it along with Docker.
fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool is not installed. Run `scripts/test-env.sh` (as `make test` does) to install it, \
         or set HOLDFAST_SKIP_DOCKER=1 to report the tests that need it as ignored."
    );
    found
}

/// `promtool <args>` in the crate root, asserting success.
fn promtool(args: &[&str]) {
    let output = run(Command::new("promtool")
        .args(args)
        .current_dir(crate_root()));
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        stdout(&output),
        stderr(&output)
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs promtool; HOLDFAST_SKIP_DOCKER=1")]
fn promtool_checks_alert_rules() {
    if promtool_available() {
        promtool(&["check", "rules", ALERTS]);
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs promtool; HOLDFAST_SKIP_DOCKER=1")]
fn promtool_unit_tests_of_alerts_pass() {
    if promtool_available() {
        promtool(&["test", "rules", ALERTS_TEST]);
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs promtool; HOLDFAST_SKIP_DOCKER=1")]
fn promtool_checks_prometheus_config() {
    if promtool_available() {
        promtool(&["check", "config", PROMETHEUS_CONFIG]);
    }
}

#[test]
fn alerts_use_only_known_metrics() {
    // The whole text, annotations and comments included: an operator reading "check
    // holdfast_x" must find holdfast_x. The unit tests too, since input series under a
    // wrong name would make a "does not fire" case pass for the wrong reason.
    for path in [ALERTS, ALERTS_TEST] {
        let text = read(path);
        let unknown = unknown_metrics(&text);
        assert!(
            unknown.is_empty(),
            "{path} names unknown metrics: {unknown:?}"
        );
    }
}

#[test]
fn alerts_have_severity_summary_and_description() {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(ALERTS)).expect(ALERTS);
    let groups = rules["groups"].as_sequence().expect("groups");
    let group = groups
        .iter()
        .find(|g| g["name"].as_str() == Some("holdfast"))
        .expect("a group named holdfast");
    let mut names = BTreeSet::new();
    for rule in group["rules"].as_sequence().expect("rules") {
        let name = rule["alert"].as_str().expect("only alerting rules");
        names.insert(name);
        assert!(
            !rule["expr"].as_str().unwrap_or_default().trim().is_empty(),
            "{name}: no expression"
        );
        assert!(
            rule["labels"]["severity"].as_str().is_some(),
            "{name}: no severity label"
        );
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no {annotation}");
        }
    }
    for required in [
        "HoldfastBackupLate",
        "HoldfastLastRunFailed",
        "HoldfastSpecInvalid",
        "HoldfastDown",
        "HoldfastAbsent",
    ] {
        assert!(names.contains(required), "{ALERTS}: no alert {required}");
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel, including those inside rows.
fn all_panels(panels: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in panels.as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(all_panels(&panel["panels"]));
    }
    out
}

/// Every (panel title, refId, expr) of the dashboard's queries.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut queries = Vec::new();
    for panel in all_panels(&dashboard["panels"]) {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "panel {title:?}: a query without expr"
            );
            queries.push((
                title.to_string(),
                target["refId"].as_str().unwrap_or_default().to_string(),
                expr.to_string(),
            ));
        }
    }
    queries
}

#[test]
fn dashboard_panels_are_sound() {
    let dashboard = dashboard();
    let panels = all_panels(&dashboard["panels"]);
    assert!(!panels.is_empty(), "{DASHBOARD}: no panels");
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?}: no id"));
        assert!(ids.insert(id), "panel id {id} ({title:?}) is used twice");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "panel {title:?}: no queries");
        // Queries go to whichever Prometheus the importer picks, not to a data source
        // that exists only on the machine the dashboard was made on.
        for source in [&panel["datasource"]].into_iter().chain(
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| &t["datasource"]),
        ) {
            assert_eq!(
                source["uid"], "${datasource}",
                "panel {title:?}: a data source other than the template variable"
            );
        }
    }
}

#[test]
fn dashboard_uses_only_known_metrics() {
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    assert!(!queries.is_empty(), "{DASHBOARD}: no queries");
    for (title, ref_id, expr) in &queries {
        assert!(
            !metric_names(expr).is_empty(),
            "panel {title:?} query {ref_id}: no holdfast metric in {expr}"
        );
        let unknown = unknown_metrics(expr);
        assert!(
            unknown.is_empty(),
            "panel {title:?} query {ref_id}: unknown metrics {unknown:?} in {expr}"
        );
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{DASHBOARD}: no variable {name:?}"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(
        variable("name")["query"]["query"],
        "label_values(holdfast_runs_total, name)"
    );
    for v in variables {
        let text = v["query"].to_string();
        let unknown = unknown_metrics(&text);
        assert!(
            unknown.is_empty(),
            "variable {}: unknown metrics {unknown:?}",
            v["name"]
        );
    }
}

/// A dashboard query as Prometheus would receive it: Grafana's interval variables get a
/// duration, the dashboard's own variables (used only in regex matchers) match anything.
fn as_promql(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1d");
    let mut out = String::new();
    let mut rest = expr.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push_str(".*");
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs promtool; HOLDFAST_SKIP_DOCKER=1")]
fn dashboard_queries_parse() {
    // Grafana shows a broken query only as an error on its panel; promtool parses every
    // expression of a rule file, so each query goes in as a recording rule.
    if !promtool_available() {
        return;
    }
    assert_eq!(
        as_promql("rate(x{name=~\"$name\"}[$__rate_interval])"),
        "rate(x{name=~\".*\"}[5m])"
    );
    let rules: Vec<Value> = dashboard_queries(&dashboard())
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, expr))| {
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": as_promql(&expr)})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().expect("temp dir");
    // JSON is YAML, which is what promtool reads.
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, file.to_string()).expect("write rule file");
    promtool(&["check", "rules", path.to_str().expect("UTF-8 temp path")]);
}
