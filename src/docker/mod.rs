//! What Docker reports: Compose stacks, containers and their mounts, named volumes.
//!
//! The model types and the grouping of containers into stacks are plain data and pure
//! functions; [`engine`] fills them from a real Docker engine through bollard.

pub mod engine;
mod error;
mod exec_io;
pub mod retry;
pub mod volumes;

use std::collections::BTreeMap;

use serde::Serialize;

/// The label Compose puts on every container of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";
pub const CONFIG_FILES_LABEL: &str = "com.docker.compose.project.config_files";
pub const DEPENDS_ON_LABEL: &str = "com.docker.compose.depends_on";

/// A container as Docker lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ContainerInfo {
    pub id: String,
    /// The name without Docker's leading '/'.
    pub name: String,
    pub image: String,
    /// Docker's state word: running, exited, paused, created, ...
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<MountInfo>,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    pub fn project(&self) -> Option<&str> {
        self.labels.get(PROJECT_LABEL).map(String::as_str)
    }

    pub fn service(&self) -> Option<&str> {
        self.labels.get(SERVICE_LABEL).map(String::as_str)
    }
}

/// What a container mounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MountInfo {
    /// A named (or anonymous) Docker volume.
    Volume {
        name: String,
        destination: String,
        read_write: bool,
    },
    /// A host folder or file.
    Bind {
        source: String,
        destination: String,
        read_write: bool,
    },
    /// tmpfs and other kinds, which hold nothing to back up.
    Other { kind: String, destination: String },
}

/// A Compose project, as found from its containers' labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    pub name: String,
    /// The folder Compose ran in, where the compose files are.
    pub working_dir: Option<String>,
    /// The compose files, as Compose recorded them, joined to `working_dir` when relative
    /// (Compose v1 records `docker-compose.yml` when run without `-f`). A path still
    /// relative had no folder to be joined to; it is never read from holdfast's own folder.
    pub config_files: Vec<String>,
    /// Containers by service name, each list sorted by container name.
    pub services: BTreeMap<String, Vec<ContainerInfo>>,
}

impl Stack {
    pub fn containers(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.services.values().flatten()
    }

    /// Named volumes mounted by any container of the stack, sorted and unique.
    pub fn volume_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .containers()
            .flat_map(|c| &c.mounts)
            .filter_map(|m| match m {
                MountInfo::Volume { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Groups containers into stacks by their Compose project label. Containers without the
/// label belong to no stack and are left out.
pub fn group_stacks(containers: Vec<ContainerInfo>) -> Vec<Stack> {
    let mut stacks: BTreeMap<String, Stack> = BTreeMap::new();
    for container in containers {
        let Some(project) = container.project().map(str::to_string) else {
            continue;
        };
        let stack = stacks.entry(project.clone()).or_insert_with(|| Stack {
            name: project,
            working_dir: None,
            config_files: Vec::new(),
            services: BTreeMap::new(),
        });
        if stack.working_dir.is_none() {
            stack.working_dir = container.labels.get(WORKING_DIR_LABEL).cloned();
        }
        if stack.config_files.is_empty()
            && let Some(files) = container.labels.get(CONFIG_FILES_LABEL)
        {
            let dir = container.labels.get(WORKING_DIR_LABEL);
            stack.config_files = files
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(|f| compose_file_path(dir.map(String::as_str), f))
                .collect();
        }
        let service = container.service().unwrap_or("").to_string();
        stack.services.entry(service).or_default().push(container);
    }
    let mut stacks: Vec<Stack> = stacks.into_values().collect();
    for stack in &mut stacks {
        for list in stack.services.values_mut() {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    stacks
}

/// A compose file's path as Compose recorded it, joined to the project's folder when it is
/// relative: Compose resolved it there, not where holdfast runs.
fn compose_file_path(working_dir: Option<&str>, file: &str) -> String {
    match working_dir {
        Some(dir) if !std::path::Path::new(file).is_absolute() => std::path::Path::new(dir)
            .join(file)
            .to_string_lossy()
            .into_owned(),
        _ => file.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(
        name: &str,
        project: Option<&str>,
        service: &str,
        mounts: Vec<MountInfo>,
    ) -> ContainerInfo {
        let mut labels = BTreeMap::new();
        if let Some(p) = project {
            labels.insert(PROJECT_LABEL.to_string(), p.to_string());
            labels.insert(SERVICE_LABEL.to_string(), service.to_string());
            labels.insert(WORKING_DIR_LABEL.to_string(), format!("/srv/{p}"));
            labels.insert(
                CONFIG_FILES_LABEL.to_string(),
                format!("/srv/{p}/docker-compose.yml"),
            );
        }
        ContainerInfo {
            id: format!("id-{name}"),
            name: name.to_string(),
            image: "img".into(),
            state: "running".into(),
            labels,
            mounts,
        }
    }

    fn volume(name: &str) -> MountInfo {
        MountInfo::Volume {
            name: name.into(),
            destination: "/data".into(),
            read_write: true,
        }
    }

    #[test]
    fn groups_by_project_and_service() {
        let stacks = group_stacks(vec![
            container("app-web-2", Some("app"), "web", vec![volume("app_data")]),
            container("app-web-1", Some("app"), "web", vec![volume("app_data")]),
            container("app-db-1", Some("app"), "db", vec![volume("app_db")]),
            container("loose", None, "", vec![]),
            container("other-x-1", Some("other"), "x", vec![]),
        ]);
        assert_eq!(stacks.len(), 2);
        let app = &stacks[0];
        assert_eq!(app.name, "app");
        assert_eq!(app.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(app.config_files, ["/srv/app/docker-compose.yml"]);
        let web: Vec<_> = app.services["web"]
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(web, ["app-web-1", "app-web-2"]);
        assert_eq!(app.volume_names(), ["app_data", "app_db"]);
    }

    #[test]
    fn relative_compose_files_are_joined_to_the_project_folder() {
        let mut c = container("usual-web-1", Some("usual"), "web", vec![]);
        c.labels.insert(
            CONFIG_FILES_LABEL.to_string(),
            "docker-compose.yml,./override.yml, /etc/shared.yml".to_string(),
        );
        let stacks = group_stacks(vec![c]);
        assert_eq!(
            stacks[0].config_files,
            [
                "/srv/usual/docker-compose.yml",
                "/srv/usual/./override.yml",
                "/etc/shared.yml"
            ]
        );
        // Without a folder a relative path stays relative: it is never read from here.
        assert_eq!(
            compose_file_path(None, "docker-compose.yml"),
            "docker-compose.yml"
        );
    }
}
