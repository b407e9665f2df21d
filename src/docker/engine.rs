//! The bollard-backed view of a Docker engine.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptions};

use super::{ContainerInfo, MountInfo, Stack, group_stacks};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("connecting to Docker at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker {operation}: {source}")]
    Api {
        operation: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

/// A connected Docker engine, with the API version negotiated down to what it speaks
/// (Docker 20.10 speaks 1.41).
#[derive(Clone, Debug)]
pub struct Engine {
    client: Docker,
}

impl Engine {
    /// Connects to `host` (`unix://…`, `tcp://…`), or to `DOCKER_HOST` and then the local
    /// socket when `host` is `None`.
    pub async fn connect(host: Option<&str>) -> Result<Engine, DockerError> {
        let endpoint = host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let connect_error = |source| DockerError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let client = match host {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_defaults(),
        }
        .map_err(connect_error)?;
        let client = client.negotiate_version().await.map_err(connect_error)?;
        Ok(Engine { client })
    }

    /// The API version in use after negotiation.
    pub fn api_version(&self) -> String {
        self.client.client_version().to_string()
    }

    /// Every container, running or not, optionally only those with a label (`key` or
    /// `key=value`).
    pub async fn containers(&self, label: Option<&str>) -> Result<Vec<ContainerInfo>, DockerError> {
        let mut options = ListContainersOptionsBuilder::new().all(true);
        if let Some(label) = label {
            let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![label])]);
            options = options.filters(&filters);
        }
        let summaries = self
            .client
            .list_containers(Some(options.build()))
            .await
            .map_err(|source| DockerError::Api {
                operation: "listing containers",
                source,
            })?;
        Ok(summaries.into_iter().map(to_container).collect())
    }

    /// Compose stacks, found by the project label on their containers.
    pub async fn stacks(&self) -> Result<Vec<Stack>, DockerError> {
        Ok(group_stacks(
            self.containers(Some(super::PROJECT_LABEL)).await?,
        ))
    }

    /// Named volumes with their mountpoints on the Docker host.
    pub async fn volumes(&self) -> Result<BTreeMap<String, String>, DockerError> {
        let response = self
            .client
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .map_err(|source| DockerError::Api {
                operation: "listing volumes",
                source,
            })?;
        Ok(response
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.mountpoint))
            .collect())
    }
}

fn to_container(summary: bollard::models::ContainerSummary) -> ContainerInfo {
    let name = summary
        .names
        .as_ref()
        .and_then(|names| names.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let state = summary.state.map(|s| s.to_string()).unwrap_or_default();
    let mounts = summary
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let destination = m.destination.unwrap_or_default();
            let read_write = m.rw.unwrap_or(true);
            match m.typ.as_deref() {
                Some("volume") => MountInfo::Volume {
                    name: m.name.unwrap_or_default(),
                    destination,
                    read_write,
                },
                Some("bind") => MountInfo::Bind {
                    source: m.source.unwrap_or_default(),
                    destination,
                    read_write,
                },
                other => MountInfo::Other {
                    kind: other.unwrap_or("unknown").to_string(),
                    destination,
                },
            }
        })
        .collect();
    ContainerInfo {
        id: summary.id.unwrap_or_default(),
        name,
        image: summary.image.unwrap_or_default(),
        state,
        labels: summary.labels.unwrap_or_default().into_iter().collect(),
        mounts,
    }
}
