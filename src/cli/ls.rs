use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::Args;

use super::OutputFormat;
use crate::archive::{Listed, ListedKind};
use crate::repo::manifest::Artifact;
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The archive, as `holdfast get archives` lists it.
    #[arg(value_name = "ARCHIVE_ID")]
    id: String,

    /// A volume or bind mount as the plain listing names it, then a path inside it:
    /// `volumes/app_data`, `volumes/app_data/uploads/2024`. Without it, the archive's
    /// artifacts are listed.
    #[arg(value_name = "PATH")]
    path: Option<String>,

    /// Everything below PATH, not only what is directly in it.
    #[arg(short = 'R', long, requires = "path")]
    recursive: bool,

    /// The archive is this other host's (in its folder of the repository). Without it, an
    /// archive this host's folder lacks is looked for in every host's folder.
    #[arg(long, value_name = "NAME")]
    from_host: Option<String>,

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) repo: crate::settings::RepoFlag,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,
}

/// An artifact's name without the extension of its format: what PATH starts with.
fn name(a: &Artifact) -> &str {
    [".tar.zst", ".tar.gz", ".tar"]
        .iter()
        .find_map(|ext| a.path.strip_suffix(ext))
        .unwrap_or(&a.path)
}

/// Volumes, bind mounts and host folders are trees; dumps and recipe files are single files.
fn is_tree(a: &Artifact) -> bool {
    matches!(a.kind.as_str(), "volume" | "bind" | "path")
}

/// Reads the manifest, and for a PATH the artifact (tar read to its end, nothing
/// extracted). Opens nothing for writing and takes no lock.
pub fn run(settings: &Settings, args: LsArgs) -> anyhow::Result<ExitCode> {
    let id = &args.id;
    let repo = super::repository_holding(settings, id, args.from_host.as_deref())?;
    let entry = match crate::repo::layout::group_of(id) {
        Some(group) => crate::repo::catalog::read_entry(&repo, group, id)?,
        None => None,
    }
    .ok_or_else(|| {
        anyhow!(
            "no archive `{id}` in {}; `holdfast get archives` lists them",
            repo.describe()
        )
    })?;
    let manifest = crate::repo::verify::manifest(&repo, &entry.group, &entry.id)?;
    let mut out = std::io::stdout().lock();
    let Some(path) = &args.path else {
        print_artifacts(&mut out, id, &manifest.artifacts, args.output)?;
        return Ok(ExitCode::SUCCESS);
    };
    let path = path.trim_matches('/');
    let within = |a: &&Artifact| {
        let n = name(a);
        path == n || path.starts_with(&format!("{n}/")) || path == a.path
    };
    let Some(artifact) = manifest
        .artifacts
        .iter()
        .filter(within)
        .max_by_key(|a| name(a).len())
    else {
        let trees: Vec<&str> = manifest
            .artifacts
            .iter()
            .filter(|a| is_tree(a))
            .map(name)
            .collect();
        let first_two: String = path.split('/').take(2).collect::<Vec<_>>().join("/");
        let hint = crate::diagnostic::did_you_mean(&first_two, trees.iter().copied())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        bail!(
            "archive {id} holds no `{path}`{hint}; PATH starts with one of its volumes or bind mounts: {}",
            if trees.is_empty() {
                "it has none".to_string()
            } else {
                trees.join(", ")
            }
        );
    };
    if !is_tree(artifact) {
        bail!(
            "`{}` is a single file ({}), not a tree: only volumes and bind mounts are listed inside",
            artifact.path,
            artifact.kind
        );
    }
    // A remote or encrypted artifact is fetched (decrypted, checked) into a temporary
    // folder first: archives have no index to list from.
    let local = crate::repo::copy::LocalArtifacts::of(
        &repo,
        &entry.group,
        &entry.id,
        std::slice::from_ref(artifact),
    )?;
    let root = local.dir().to_path_buf();
    let inside = path
        .strip_prefix(name(artifact))
        .unwrap_or("")
        .trim_start_matches('/');
    let info = local.info(artifact);
    let entries = crate::archive::list_artifact(&root, &info, inside, args.recursive)?;
    match args.output {
        OutputFormat::Json => {
            let entries: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
            let value = serde_json::json!({
                "archive": id,
                "artifact": artifact.path,
                "path": inside,
                "entries": entries,
            });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        OutputFormat::Text => print_entries(&mut out, inside, &entries)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_artifacts(
    out: &mut impl Write,
    id: &str,
    artifacts: &[Artifact],
    format: OutputFormat,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        let list: Vec<serde_json::Value> = artifacts
            .iter()
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["name"] = name(a).into();
                v
            })
            .collect();
        serde_json::to_writer_pretty(
            &mut *out,
            &serde_json::json!({"archive": id, "artifacts": list}),
        )?;
        writeln!(out)?;
        return Ok(());
    }
    let human = super::plan::human_bytes;
    let mut rows = vec![[
        "KIND".to_string(),
        "NAME".to_string(),
        "SOURCE".to_string(),
        "STORED".to_string(),
        "DATA".to_string(),
        "ENTRIES".to_string(),
    ]];
    for a in artifacts {
        rows.push([
            a.kind.clone(),
            name(a).to_string(),
            a.source.clone().unwrap_or_else(|| "-".into()),
            human(a.size),
            human(a.source_bytes),
            a.entries.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    if let Some(tree) = artifacts.iter().find(|a| is_tree(a)) {
        writeln!(
            out,
            "\nList a volume's files with `holdfast ls {id} {}`.",
            name(tree)
        )?;
    }
    Ok(())
}

/// `rwxr-s---` with setuid, setgid and sticky bits as `ls -l` shows them.
fn permissions(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, on, off) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => on,
            (false, true) => off,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn mtime(e: &Listed) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(e.mtime.0, u32::try_from(e.mtime.1).unwrap_or(0))
}

/// Type, mode, owner, size, mtime (UTC), name relative to the folder listed, link target.
fn print_entries(out: &mut impl Write, inside: &str, entries: &[Listed]) -> anyhow::Result<()> {
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| {
            let shown = match e.path.strip_prefix(inside) {
                Some(rest) if !inside.is_empty() && rest.starts_with('/') => &rest[1..],
                _ => e.path.as_str(),
            };
            let name = match (e.kind, &e.target) {
                (ListedKind::Symlink, Some(to)) => format!("{shown} -> {to}"),
                (ListedKind::Hardlink, Some(to)) => format!("{shown} link to {to}"),
                _ => shown.to_string(),
            };
            [
                format!("{}{}", e.kind.letter(), permissions(e.mode)),
                format!("{}:{}", e.uid, e.gid),
                e.size.to_string(),
                mtime(e).map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    + " "
                    + &name,
            ]
        })
        .collect();
    let owner = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    let size = rows.iter().map(|r| r[2].len()).max().unwrap_or(0);
    for r in rows {
        writeln!(out, "{} {:<owner$} {:>size$} {}", r[0], r[1], r[2], r[3])?;
    }
    Ok(())
}

fn entry_json(e: &Listed) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": e.path,
        "type": e.kind.name(),
        "mode": format!("{:04o}", e.mode),
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size,
        "mtime": mtime(e).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    });
    if let Some(to) = &e.target {
        v["target"] = to.clone().into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_like_ls() {
        assert_eq!(permissions(0o755), "rwxr-xr-x");
        assert_eq!(permissions(0o2750), "rwxr-s---");
        assert_eq!(permissions(0o4644), "rwSr--r--");
        assert_eq!(permissions(0o1777), "rwxrwxrwt");
    }
}
