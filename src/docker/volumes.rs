//! Volume operations a restore needs: inspect, create, remove, and who mounts a volume.

use std::collections::{BTreeMap, HashMap};

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::RemoveVolumeOptions;

use super::engine::{DockerError, Engine, on};
use super::{ContainerInfo, MountInfo};

/// A named volume as Docker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// Where its data lives on the Docker host (`local` driver: `.../volumes/<name>/_data`).
    pub mountpoint: String,
    pub labels: BTreeMap<String, String>,
}

impl Engine {
    /// The volume, or `None` when it does not exist.
    pub async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, DockerError> {
        match self.client.inspect_volume(name).await {
            Ok(v) => Ok(Some(VolumeInfo {
                name: v.name,
                mountpoint: v.mountpoint,
                labels: v.labels.into_iter().collect(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(on("inspecting volume", name)(e)),
        }
    }

    /// Creates a local volume with these labels.
    pub async fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, DockerError> {
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            ),
            ..Default::default()
        };
        let v = self
            .client
            .create_volume(request)
            .await
            .map_err(on("creating volume", name))?;
        Ok(VolumeInfo {
            name: v.name,
            mountpoint: v.mountpoint,
            labels: v.labels.into_iter().collect(),
        })
    }

    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        self.client
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
            .map_err(on("removing volume", name))
    }

    /// Every container, running or not, that mounts the volume.
    pub async fn users_of_volume(&self, name: &str) -> Result<Vec<ContainerInfo>, DockerError> {
        let all = self.containers(None).await?;
        Ok(all
            .into_iter()
            .filter(|c| {
                c.mounts
                    .iter()
                    .any(|m| matches!(m, MountInfo::Volume { name: n, .. } if n == name))
            })
            .collect())
    }
}
