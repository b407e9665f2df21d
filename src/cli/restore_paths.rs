use std::io::Write;
use std::process::ExitCode;

use super::OutputFormat;
use crate::restore::files::{Part, PathRestore, restore_paths};

/// `holdfast restore --path`: reads the repository and writes only into the folder given;
/// no Docker, no state folder, no lock.
pub fn run(
    repo: &crate::repo::Repository,
    request: &PathRestore,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let done = restore_paths(repo, request, &crate::progress::Silent)?;
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Json => {
            let value = serde_json::json!({
                "archive": done.archive,
                "volume": match &request.part {
                    Part::Volume(v) => Some(v),
                    Part::Folder(_) => None,
                },
                "folder": match &request.part {
                    Part::Folder(f) => Some(f),
                    Part::Volume(_) => None,
                },
                "artifact": done.artifact,
                "paths": request.paths,
                "to": request.to,
                "entries": done.stats.entries,
                "bytes": done.stats.bytes,
            });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        OutputFormat::Text => writeln!(
            out,
            "restored {} of {} from {} into {}: {} entries, {}",
            if request.paths.is_empty() {
                "all".to_string()
            } else {
                request.paths.join(", ")
            },
            request.part.describe(),
            done.archive,
            request.to.display(),
            done.stats.entries,
            super::plan::human_bytes(done.stats.bytes)
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
