use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::OutputFormat;
use crate::settings::Settings;
use crate::validate::validate_paths;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Spec files or folders to check; defaults to the specs folder (--specs).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// `text`: one error per line as file:line:column: Kind/name: field: message.
    /// `json`: a single object with every error, for CI bots.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,

    /// Check as host NAME of a fleet would: objects whose hostSelector it does not match
    /// are listed as not selected, and what it runs may not name them.
    #[arg(long = "host", id = "validate_host", value_name = "NAME", value_parser = crate::settings::parse_host)]
    host: Option<String>,

    /// With --host: that host's labels, as `holdfast run --host-labels` takes them.
    #[arg(
        long = "host-labels",
        id = "validate_host_labels",
        value_name = "LABELS",
        requires = "validate_host",
        value_parser = crate::settings::parse_host_labels_flag
    )]
    host_labels: Option<crate::settings::HostLabels>,
}

pub fn run(settings: &Settings, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![settings.specs.clone()]
    } else {
        args.paths
    };
    let mut report = validate_paths(&paths);
    if let Some(host) = &args.host {
        let on = Settings {
            host: Some(host.clone()),
            host_labels: args.host_labels.clone().unwrap_or_default().0,
            ..Settings::default()
        };
        for line in super::specs::select_host(&mut report, &crate::validate::HostView::of(&on)) {
            eprintln!("{line}");
        }
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report.to_json())?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for diagnostic in report.diagnostics() {
                writeln!(out, "{diagnostic}")?;
            }
            let errors = report.diagnostics().len();
            let summary = format!(
                "{} file{}, {} object{}: {}",
                report.files.len(),
                plural(report.files.len()),
                report.object_count(),
                plural(report.object_count()),
                if errors == 0 {
                    "valid".to_string()
                } else {
                    format!("{errors} error{}", plural(errors))
                }
            );
            eprintln!("{summary}");
        }
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
