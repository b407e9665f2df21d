//! `holdfast man`: the manual pages, `holdfast(1)` and one per command
//! (`holdfast-run(1)`, `holdfast-notify-test(1)`), rendered in roff from the same command
//! definition as `--help`. The Debian package installs them; without a package,
//! `holdfast man | man -l -` reads the main page.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use clap_mangen::Man;

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write `holdfast.1` and a `holdfast-<command>.1` per command into
    /// (created when missing), printing each file written. Without it, the main page goes
    /// to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: ManArgs) -> anyhow::Result<ExitCode> {
    // `help` is a page of its own in no manual: `man holdfast` is that help.
    let command = super::definition().disable_help_subcommand(true);
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        page_of(command).render(&mut page)?;
        std::io::stdout()
            .lock()
            .write_all(&page)
            .context("writing the man page to stdout")?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the folder {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(command, &dir, &mut written)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The page of `command`, whose footer names holdfast and its version (clap_mangen would
/// name the command alone: `run 0.1.0`).
fn page_of(command: clap::Command) -> Man {
    Man::new(command).source(format!("{} {}", super::NAME, env!("CARGO_PKG_VERSION")))
}

/// Writes the page of `command` and those of its commands, depth first, into `dir`,
/// adding each file to `written`. Building the command first gives every subcommand its
/// display name (`holdfast-notify-test`), which names its page.
fn write_pages(
    mut command: clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    command.build();
    let subcommands: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .cloned()
        .collect();
    let man = page_of(command);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for subcommand in subcommands {
        write_pages(subcommand, dir, written)?;
    }
    Ok(())
}
