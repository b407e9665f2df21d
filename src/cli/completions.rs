//! `holdfast completions SHELL`: the shell's completion script, on stdout. Generated from
//! the same command definition as `--help`, so a new command or flag completes as soon as
//! it exists. The Debian package installs the bash, zsh and fish scripts where those shells
//! look; anyone else redirects the output to their shell's folder.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell whose completion script to print.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    // Into a buffer first: clap_complete panics on a failed write, and a closed pipe
    // (`holdfast completions bash | head`) is an error to report, not a crash.
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut super::definition(),
        super::NAME,
        &mut script,
    );
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}
