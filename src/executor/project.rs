//! Compose projects found by their folder (`targets.composeProjects`), and the host
//! folders of `targets.paths`: what the files on this machine say, read before a plan is
//! resolved.
//!
//! A stack taken down with `docker compose down` has no container left to say which
//! volumes and folders it uses, but its compose file still does: the named volumes it
//! declares (`<project>_<volume>`, or their `name:`, or `external:` ones by their own
//! name) and the folders its services bind-mount. The file is read as Compose reads it:
//! `${VAR}` values come from the `.env` beside it, the project name from
//! `projectName`, `COMPOSE_PROJECT_NAME`, the file's `name:` or the folder's name, and a
//! relative bind source is relative to the compose file's folder. The parsing is shared
//! with the stop order's reader ([`super::order::compose_document`]).
//!
//! Only [`observe_host`] and [`read_project`] touch the file system; the rest is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde_yaml_ng::Value;

use super::order::{compose_document, compose_services};
use super::resolve::{FolderState, Observed};
use crate::spec::common::{ComposeProject, Targets, normalize_project_name};

/// Compose's default file names, in the order it looks for them.
const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// What a compose project's files say about its data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundProject {
    /// The project name, as Compose names its volumes and containers.
    pub name: String,
    /// The compose files read, in order.
    pub files: Vec<String>,
    /// Docker names of the named volumes it declares or mounts.
    pub volumes: BTreeSet<String>,
    /// Absolute host folders (or files) its services bind-mount.
    pub binds: BTreeSet<String>,
}

/// Adds to `observed` what this machine says about the folders `targets` names: each
/// compose project's files, and whether each host folder (given, or bind-mounted by a
/// project) exists, with its real path.
pub fn observe_host(targets: &Targets, observed: &mut Observed) {
    let mut folders: Vec<String> = targets.paths.clone();
    for project in &targets.compose_projects {
        let found = read_project(project);
        if let Ok(found) = &found {
            folders.extend(found.binds.iter().cloned());
        }
        observed.projects.insert(project.clone(), found);
    }
    for folder in folders {
        let state = match std::fs::metadata(&folder) {
            Ok(m) if m.is_dir() => FolderState::Folder,
            Ok(_) => FolderState::NotFolder,
            Err(e) => FolderState::Unreadable(e.to_string()),
        };
        if let Ok(real) = std::fs::canonicalize(&folder) {
            observed.real_paths.insert(folder.clone(), real);
        }
        observed.folders.insert(folder, state);
    }
}

/// Reads a project's compose files and `.env`; the error names the file and says why.
pub fn read_project(project: &ComposeProject) -> Result<FoundProject, String> {
    let dir = Path::new(&project.path);
    let files: Vec<PathBuf> = match &project.file {
        Some(file) => vec![dir.join(file)],
        None => {
            let Some(base) = DEFAULT_FILES
                .iter()
                .map(|f| dir.join(f))
                .find(|f| f.exists())
            else {
                return Err(format!(
                    "no compose file in {} (looked for {}); name it with `file:`",
                    dir.display(),
                    DEFAULT_FILES.join(", ")
                ));
            };
            // `compose.yaml` -> `compose.override.yaml`, merged after it as Compose does.
            let name = base.file_name().unwrap_or_default().to_string_lossy();
            let overrides = name
                .rsplit_once('.')
                .map(|(stem, ext)| dir.join(format!("{stem}.override.{ext}")));
            std::iter::once(base)
                .chain(overrides.filter(|o| o.exists()))
                .collect()
        }
    };
    let env_file = dir.join(".env");
    let env = match std::fs::read_to_string(&env_file) {
        Ok(text) => parse_dotenv(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(format!("{} could not be read ({e})", env_file.display())),
    };
    let mut docs = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("{} could not be read ({e})", file.display()))?;
        let doc = parse_compose(&text, &env).map_err(|e| {
            format!(
                "{} is not a compose file holdfast can read ({e})",
                file.display()
            )
        })?;
        docs.push(doc);
    }
    let folder = files[0].parent().unwrap_or(dir).to_path_buf();
    let named = docs
        .iter()
        .rev()
        .find_map(|d| d.get("name").and_then(Value::as_str).map(str::to_string));
    let name = project
        .project_name
        .clone()
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").cloned())
        .or(named)
        .unwrap_or_else(|| {
            folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let name = normalize_project_name(&name);
    if name.is_empty() {
        return Err(format!(
            "no project name for {}: set `projectName`",
            dir.display()
        ));
    }
    let home = std::env::var("HOME").ok();
    let mut found = FoundProject {
        name: name.clone(),
        files: files.iter().map(|f| f.display().to_string()).collect(),
        ..FoundProject::default()
    };
    for doc in &docs {
        let (volumes, binds) = project_storage(doc, &name, &folder, home.as_deref())
            .map_err(|e| format!("{}: {e}", files[0].display()))?;
        found.volumes.extend(volumes);
        found.binds.extend(binds);
    }
    Ok(found)
}

/// `KEY=VALUE` lines of a `.env` file: comments and blank lines skipped, `export `
/// allowed, surrounding quotes removed.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) if value.len() >= 2 && value.ends_with(q) => {
                &value[1..value.len() - 1]
            }
            // An unquoted value ends at ` #`.
            _ => value.split(" #").next().unwrap_or(value).trim_end(),
        };
        vars.insert(key.trim().to_string(), value.to_string());
    }
    vars
}

/// Replaces `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+other}`,
/// `${VAR+other}`, `${VAR:?message}` and `${VAR?message}` as Compose does (`$$` is a
/// `$`); a variable that is not set is empty, unless `?` asks for an error.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let mut depth = 1;
            let end = inner
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .ok_or_else(|| format!("`${{` without its `}}` in `{text}`"))?;
            out.push_str(&expand(&inner[..end], vars)?);
            rest = &inner[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
                })
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` without its braces.
fn expand(inner: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let name_len = inner
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_len);
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let given = |word: &str| interpolate(word, vars);
    match op {
        "" => Ok(value.cloned().unwrap_or_default()),
        _ if op.starts_with(":-") => match set_nonempty {
            true => Ok(value.cloned().unwrap_or_default()),
            false => given(&op[2..]),
        },
        _ if op.starts_with('-') => match value {
            Some(v) => Ok(v.clone()),
            None => given(&op[1..]),
        },
        _ if op.starts_with(":+") => match set_nonempty {
            true => given(&op[2..]),
            false => Ok(String::new()),
        },
        _ if op.starts_with('+') => match value {
            Some(_) => given(&op[1..]),
            None => Ok(String::new()),
        },
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let ok = if op.starts_with(':') {
                set_nonempty
            } else {
                value.is_some()
            };
            match ok {
                true => Ok(value.cloned().unwrap_or_default()),
                false => Err(format!(
                    "`{name}` is required: {}",
                    op.trim_start_matches(':').trim_start_matches('?')
                )),
            }
        }
        _ => Err(format!(
            "`${{{inner}}}` is not an interpolation Compose knows"
        )),
    }
}

/// A compose file's YAML with every string value interpolated from `vars`.
pub fn parse_compose(text: &str, vars: &BTreeMap<String, String>) -> Result<Value, String> {
    fn walk(v: &mut Value, vars: &BTreeMap<String, String>) -> Result<(), String> {
        match v {
            Value::String(s) => *s = interpolate(s, vars)?,
            Value::Sequence(items) => {
                for item in items {
                    walk(item, vars)?;
                }
            }
            Value::Mapping(map) => {
                for (_, item) in map.iter_mut() {
                    walk(item, vars)?;
                }
            }
            Value::Tagged(t) => walk(&mut t.value, vars)?,
            _ => {}
        }
        Ok(())
    }
    let mut doc = compose_document(text)?;
    walk(&mut doc, vars)?;
    Ok(doc)
}

/// The Docker names of the named volumes a compose document declares or mounts, and the
/// absolute host paths its services bind-mount (relative ones joined to `folder`).
pub fn project_storage(
    doc: &Value,
    project: &str,
    folder: &Path,
    home: Option<&str>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let declared = doc.get("volumes").and_then(Value::as_mapping);
    let docker_name = |key: &str| -> String {
        let Some(spec) = declared.and_then(|d| d.get(key)) else {
            return format!("{project}_{key}");
        };
        if let Some(name) = spec.get("name").and_then(Value::as_str) {
            return name.to_string();
        }
        match spec.get("external") {
            Some(Value::Bool(true)) => key.to_string(),
            // The version 2 form: `external: {name: x}`.
            Some(external @ Value::Mapping(_)) => external
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(key)
                .to_string(),
            _ => format!("{project}_{key}"),
        }
    };
    let mut volumes = BTreeSet::new();
    let mut binds = BTreeSet::new();
    for key in declared.into_iter().flat_map(|d| d.keys()) {
        if let Some(key) = key.as_str() {
            volumes.insert(docker_name(key));
        }
    }
    let host_path = |source: &str| -> PathBuf {
        let path = match (source.strip_prefix("~/"), home) {
            (Some(rest), Some(home)) => Path::new(home).join(rest),
            _ => folder.join(source),
        };
        lexical(&path)
    };
    let Some(services) = compose_services(doc)? else {
        return Ok((volumes, binds));
    };
    for (_, service) in services {
        let Some(mounts) = service.get("volumes").and_then(Value::as_sequence) else {
            continue;
        };
        for mount in mounts {
            match mount {
                // `source:target[:mode]`; a lone target is an anonymous volume.
                Value::String(short) => {
                    let Some((source, _)) = short.split_once(':') else {
                        continue;
                    };
                    if source.starts_with(['/', '.', '~']) {
                        binds.insert(host_path(source).display().to_string());
                    } else if !source.is_empty() {
                        volumes.insert(docker_name(source));
                    }
                }
                Value::Mapping(_) => {
                    let source = mount.get("source").and_then(Value::as_str);
                    match (mount.get("type").and_then(Value::as_str), source) {
                        (Some("bind"), Some(source)) => {
                            binds.insert(host_path(source).display().to_string());
                        }
                        (Some("volume"), Some(source)) if !source.is_empty() => {
                            volumes.insert(docker_name(source));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    Ok((volumes, binds))
}

/// `path` with `.` and `..` resolved without looking at the disk.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_interpolated_as_compose_does() {
        let v = vars(&[("DATA", "/srv/data"), ("EMPTY", "")]);
        let i = |t: &str| interpolate(t, &v);
        assert_eq!(i("${DATA}/db").unwrap(), "/srv/data/db");
        assert_eq!(i("$DATA/db").unwrap(), "/srv/data/db");
        assert_eq!(i("$$DATA").unwrap(), "$DATA");
        assert_eq!(i("${NOPE:-./data}").unwrap(), "./data");
        assert_eq!(i("${EMPTY:-x}").unwrap(), "x");
        assert_eq!(i("${EMPTY-x}").unwrap(), "");
        assert_eq!(i("${NOPE-${DATA}}").unwrap(), "/srv/data");
        assert_eq!(i("${DATA:+set}").unwrap(), "set");
        assert_eq!(i("${NOPE:+set}").unwrap(), "");
        assert_eq!(i("${NOPE}").unwrap(), "");
        assert_eq!(i("a $ b").unwrap(), "a $ b");
        assert!(i("${NOPE:?set NOPE}").unwrap_err().contains("set NOPE"));
        assert!(i("${DATA").is_err());
    }

    #[test]
    fn dotenv_lines_are_read_as_compose_reads_them() {
        let env = parse_dotenv(
            "# comment\nCOMPOSE_PROJECT_NAME=cloud\nexport A=1\nB=\"two words\"\nC='x' \nD=y # note\n\n",
        );
        assert_eq!(env["COMPOSE_PROJECT_NAME"], "cloud");
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "x");
        assert_eq!(env["D"], "y");
        assert_eq!(normalize_project_name("My.Cloud-1"), "mycloud-1");
        assert_eq!(normalize_project_name("_x"), "x");
    }

    const CLOUD: &str = "services:
  app:
    image: nextcloud
    volumes:
      - html:/var/www/html
      - ${DATA:-./data}:/data
      - ./config/:/config:ro
      - ~/keys:/keys
      - /var/run/docker.sock:/var/run/docker.sock
      - /tmp/anonymous
      - type: bind
        source: ../shared
        target: /shared
      - type: volume
        source: cache
        target: /cache
      - type: tmpfs
        target: /run
  db:
    image: postgres
    volumes: [db:/var/lib/postgresql/data, outside:/outside]
volumes:
  html: {}
  db:
    name: cloud-database
  cache:
  outside:
    external: true
  older:
    external: {name: legacy}
";

    #[test]
    fn a_compose_file_says_its_volumes_and_bind_mounts() {
        let doc = parse_compose(CLOUD, &vars(&[("DATA", "/srv/cloud-data")])).unwrap();
        let (volumes, binds) =
            project_storage(&doc, "cloud", Path::new("/srv/cloud"), Some("/home/me")).unwrap();
        let volumes: Vec<&str> = volumes.iter().map(String::as_str).collect();
        assert_eq!(
            volumes,
            [
                "cloud-database",
                "cloud_cache",
                "cloud_html",
                "legacy",
                "outside"
            ]
        );
        let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
        assert_eq!(
            binds,
            [
                "/home/me/keys",
                "/srv/cloud-data",
                "/srv/cloud/config",
                "/srv/shared",
                "/var/run/docker.sock"
            ]
        );
        // Without the variable, its default.
        let doc = parse_compose(CLOUD, &BTreeMap::new()).unwrap();
        let (_, binds) = project_storage(&doc, "cloud", Path::new("/srv/cloud"), None).unwrap();
        assert!(binds.contains("/srv/cloud/data"), "{binds:?}");
    }

    #[test]
    fn a_project_folder_is_read_with_its_env_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("Next.Cloud");
        std::fs::create_dir(&folder).unwrap();
        let project = |file: Option<&str>, name: Option<&str>| ComposeProject {
            path: folder.display().to_string(),
            file: file.map(str::to_string),
            project_name: name.map(str::to_string),
        };
        let err = read_project(&project(None, None)).unwrap_err();
        assert!(err.starts_with("no compose file in"), "{err}");

        std::fs::write(
            folder.join("docker-compose.yml"),
            "services:\n  app:\n    volumes: ['data:/data', '${SUB}:/sub']\nvolumes:\n  data:\n",
        )
        .unwrap();
        std::fs::write(
            folder.join("docker-compose.override.yml"),
            "services:\n  app:\n    volumes: ['./extra:/extra']\n",
        )
        .unwrap();
        // The folder's name, made a project name.
        let found = read_project(&project(None, None)).unwrap();
        assert_eq!(found.name, "nextcloud");
        assert_eq!(found.files.len(), 2);
        assert!(found.volumes.contains("nextcloud_data"));
        let extra = folder.join("extra").display().to_string();
        assert!(found.binds.contains(&extra), "{:?}", found.binds);

        // `.env` names the project and fills the variables; `projectName` wins.
        std::fs::write(
            folder.join(".env"),
            "COMPOSE_PROJECT_NAME=cloud\nSUB=./sub\n",
        )
        .unwrap();
        let found = read_project(&project(None, None)).unwrap();
        assert_eq!(found.name, "cloud");
        assert!(found.volumes.contains("cloud_data"));
        let sub = folder.join("sub").display().to_string();
        assert!(found.binds.contains(&sub), "{:?}", found.binds);
        assert_eq!(
            read_project(&project(None, Some("other"))).unwrap().name,
            "other"
        );

        // A named file: only it, no override.
        std::fs::write(folder.join("prod.yml"), "name: prod\nservices: [\n").unwrap();
        let err = read_project(&project(Some("prod.yml"), None)).unwrap_err();
        assert!(err.contains("prod.yml is not a compose file"), "{err}");
        std::fs::write(folder.join("prod.yml"), "name: prod\nservices: {}\n").unwrap();
        std::fs::remove_file(folder.join(".env")).unwrap();
        let found = read_project(&project(Some("prod.yml"), None)).unwrap();
        assert_eq!(found.name, "prod");
        assert_eq!(found.files.len(), 1);
    }
}
