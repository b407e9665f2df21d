//! The command line: one thin file per subcommand over the library.

mod schema;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Declarative backups for Docker hosts",
    long_about = "holdfast keeps Docker hosts backed up the way Kubernetes controllers keep clusters in shape: \
BackupPolicy, Archive and Restore specs in a folder (kept in git) say what you want, and holdfast makes it so.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files and print every error with its file, line, column and field.
    Validate(validate::ValidateArgs),
    /// Write the JSON Schema of each kind, for editors and CI.
    Schema(schema::SchemaArgs),
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Runs the parsed command. Exit codes: 0 success, 1 the work failed or input was invalid,
/// 2 usage error (clap exits with 2 before this is reached).
pub fn run(cli: Cli) -> ExitCode {
    crate::logging::init(cli.settings.log_format);
    let result = match cli.command {
        Command::Validate(args) => validate::run(&cli.settings, args),
        Command::Schema(args) => schema::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
