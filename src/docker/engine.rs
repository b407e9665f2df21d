//! The bollard-backed view of a Docker engine.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptionsBuilder,
    ListImagesOptions, ListVolumesOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::retry::{DOCKER, retry};
use super::{ContainerInfo, MountInfo, Stack, group_stacks};

pub use super::error::{DockerError, error_counts};
pub(super) use super::error::{api, count, on};

/// A container as `docker inspect` shows it, with what holdfast needs picked out.
#[derive(Clone, Debug)]
pub struct ContainerDetails {
    pub id: String,
    pub name: String,
    pub running: bool,
    /// When its process last started, by the engine's clock; `None` if it never did.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `healthy`, `unhealthy` or `starting` when the container has a healthcheck.
    pub health: Option<String>,
    /// `KEY=value` pairs of the container's environment. Holds secrets: never log it.
    pub env: Vec<String>,
    pub image: String,
    pub image_id: String,
    pub networks: Vec<String>,
    /// The whole inspect document, for the recipe (to be redacted before it is written).
    pub raw: serde_json::Value,
}

impl ContainerDetails {
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            kv.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
        })
    }
}

/// What a command run with `docker exec` printed and how it ended.
#[derive(Clone, Debug)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Keep at most this much of a command's output in memory; a hook that prints gigabytes
/// must not take the daemon with it.
pub(super) const MAX_CAPTURE: usize = 1 << 20;

/// A connected Docker engine, with the API version negotiated down to what it speaks
/// (Docker 20.10 speaks 1.41).
#[derive(Clone, Debug)]
pub struct Engine {
    /// Other files of this module add operations of their own.
    pub(super) client: Docker,
}

pub use crate::settings::DockerEndpoint as Endpoint;

/// A stop timeout as the whole seconds Docker takes.
fn seconds(timeout: Duration) -> i32 {
    timeout.as_secs().min(i32::MAX as u64) as i32
}

/// Seconds a Docker call may take before the client gives up, as Docker's own client.
const TIMEOUT: u64 = 120;

/// The files `--docker-cert-path` must hold, in the order they are checked.
pub const TLS_FILES: [&str; 3] = ["ca.pem", "cert.pem", "key.pem"];

impl Engine {
    /// Connects to `host` (`unix://…`, `tcp://…`), or to `DOCKER_HOST` and then the local
    /// socket when `host` is `None`, without TLS.
    pub async fn connect(host: Option<&str>) -> Result<Engine, DockerError> {
        Self::open(&Endpoint {
            host: host.map(str::to_string),
            tls: None,
        })
        .await
    }

    /// Connects to `endpoint`. With TLS the engine must be reached over TCP and present a
    /// certificate from `ca.pem`, and holdfast shows `cert.pem`, as `docker --tlsverify`
    /// does. Without it a `tcp://` endpoint is plain HTTP, whatever `DOCKER_TLS_VERIFY`
    /// says to the client library: the flags decide, read once in one place.
    pub async fn open(endpoint: &Endpoint) -> Result<Engine, DockerError> {
        let host = endpoint
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let connect_error = |source| DockerError::Connect {
            endpoint: host.clone(),
            source: Box::new(source),
        };
        let scheme = host.split_once("://").map_or("", |(s, _)| s);
        let client = match (&endpoint.tls, scheme) {
            (Some(folder), "tcp" | "https") => {
                let [ca, cert, key] = TLS_FILES.map(|name| folder.join(name));
                for file in [&ca, &cert, &key] {
                    if let Err(source) = std::fs::File::open(file) {
                        return Err(DockerError::TlsFile {
                            path: file.clone(),
                            source,
                        });
                    }
                }
                Docker::connect_with_ssl(
                    &host,
                    &key,
                    &cert,
                    &ca,
                    TIMEOUT,
                    bollard::API_DEFAULT_VERSION,
                )
            }
            (Some(_), _) => return Err(DockerError::TlsNeedsTcp { endpoint: host }),
            (None, "https") => return Err(DockerError::HttpsNeedsTls { endpoint: host }),
            (None, "tcp" | "http") => {
                Docker::connect_with_http(&host, TIMEOUT, bollard::API_DEFAULT_VERSION)
            }
            (None, _) => Docker::connect_with_host(&host),
        }
        .map_err(connect_error)?;
        let client = client.negotiate_version().await.map_err(connect_error)?;
        Ok(Engine { client })
    }

    /// Whether the engine answers, for readiness checks.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.client.ping().await.map(|_| ()).map_err(api("ping"))
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
        let options = options.build();
        let summaries = retry(&DOCKER, || async {
            self.client
                .list_containers(Some(options.clone()))
                .await
                .map_err(api("listing containers"))
        })
        .await?;
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
        let response = retry(&DOCKER, || async {
            self.client
                .list_volumes(None::<ListVolumesOptions>)
                .await
                .map_err(api("listing volumes"))
        })
        .await?;
        Ok(response
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.mountpoint))
            .collect())
    }
}

impl Engine {
    pub async fn inspect(&self, id: &str) -> Result<ContainerDetails, DockerError> {
        let info = retry(&DOCKER, || async {
            self.client
                .inspect_container(id, None)
                .await
                .map_err(on("inspecting container", id))
        })
        .await?;
        let raw = serde_json::to_value(&info).unwrap_or(serde_json::Value::Null);
        let state = info.state.as_ref();
        Ok(ContainerDetails {
            id: info.id.clone().unwrap_or_default(),
            name: info
                .name
                .clone()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            running: state.and_then(|s| s.running).unwrap_or(false),
            started_at: state
                .and_then(|s| s.started_at.as_deref())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                // Docker's zero time, for a container never started.
                .filter(|t| t.timestamp() > 0),
            health: state
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.status.as_ref())
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            env: info
                .config
                .as_ref()
                .and_then(|c| c.env.clone())
                .unwrap_or_default(),
            image: info
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            image_id: info.image.clone().unwrap_or_default(),
            networks: info
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .map(|n| n.keys().cloned().collect())
                .unwrap_or_default(),
            raw,
        })
    }

    /// When a container's process last started, for the stop journal; `None` when Docker
    /// cannot say (the journal then falls back to comparing clocks).
    pub async fn started_at(&self, id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.inspect(id).await.ok().and_then(|d| d.started_at)
    }

    /// Stops a container, giving it `timeout` before Docker kills it. The request waits
    /// as long as the stop may take, and a minute more: a stop longer than the client's
    /// usual request timeout is waited out, not reported as failed while still under way.
    /// A transient failure is tried again: Docker answers the stop of a stopped container
    /// with success.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(seconds(timeout)),
            signal: None,
        };
        let client = self.patient(timeout);
        retry(&DOCKER, || async {
            client
                .stop_container(id, Some(options.clone()))
                .await
                .map_err(on("stopping container", id))
        })
        .await
    }

    /// The client for a call that lets a container take `timeout` to stop: it waits that
    /// long and a minute more, never less than the usual request timeout.
    fn patient(&self, timeout: Duration) -> Docker {
        let patience = timeout.saturating_add(Duration::from_secs(60));
        self.client
            .clone()
            .with_timeout(patience.max(self.client.timeout()))
    }

    /// Starts a container. A transient failure is tried again: Docker answers the start
    /// of a running container with success.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        retry(&DOCKER, || async {
            self.client
                .start_container(id, None::<StartContainerOptions>)
                .await
                .map_err(on("starting container", id))
        })
        .await
    }

    /// Restarts a container, giving it `timeout` to stop before Docker kills it; a stopped
    /// container is started. The request waits as long as the stop may take, and a minute
    /// more, as [`Engine::stop`] does.
    pub async fn restart(&self, id: &str, timeout: Duration) -> Result<(), DockerError> {
        let options = bollard::query_parameters::RestartContainerOptions {
            t: Some(seconds(timeout)),
            signal: None,
        };
        let client = self.patient(timeout);
        retry(&DOCKER, || async {
            client
                .restart_container(id, Some(options.clone()))
                .await
                .map_err(on("restarting container", id))
        })
        .await
    }

    /// Freezes every process of a running container (Docker refuses one not running).
    pub async fn pause(&self, id: &str) -> Result<(), DockerError> {
        retry(&DOCKER, || async {
            self.client
                .pause_container(id)
                .await
                .map_err(on("pausing container", id))
        })
        .await
    }

    /// Thaws a paused container (Docker refuses one not paused).
    pub async fn unpause(&self, id: &str) -> Result<(), DockerError> {
        retry(&DOCKER, || async {
            self.client
                .unpause_container(id)
                .await
                .map_err(on("unpausing container", id))
        })
        .await
    }

    /// Runs a command in a running container and collects its output (each stream capped).
    pub async fn exec(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DockerError> {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let collect = async {
            let mut out = Vec::new();
            while let Some(chunk) = rx.recv().await {
                let room = MAX_CAPTURE.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            out
        };
        let run = self.exec_streaming(container, command, env, tx);
        let work = async { tokio::join!(run, collect) };
        match tokio::time::timeout(timeout, work).await {
            Ok((result, stdout)) => {
                let (exit_code, stderr) = result?;
                Ok(ExecOutput {
                    exit_code,
                    stdout,
                    stderr,
                })
            }
            Err(_) => Err({
                count("exec");
                DockerError::ExecTimeout {
                    container: container.to_string(),
                    command: command.to_vec(),
                    timeout,
                }
            }),
        }
    }

    /// Runs a command in a running container, sending its stdout to `sink` as it comes.
    /// Returns the exit code and the (capped) stderr. The sink is dropped at the end, which
    /// tells its reader that the stream is complete.
    pub async fn exec_streaming(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        sink: mpsc::Sender<Bytes>,
    ) -> Result<(i64, String), DockerError> {
        let config = CreateExecOptions {
            cmd: Some(command.to_vec()),
            env: Some(env.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = retry(&DOCKER, || async {
            self.client
                .create_exec(container, config.clone())
                .await
                .map_err(on("creating exec in", container))
        })
        .await?;
        // Never tried again: the command would run twice.
        let started = self
            .client
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
            .map_err(on("starting exec in", container))?;
        let mut stderr = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(item) = output.next().await {
                match item.map_err(on("reading exec output of", container))? {
                    bollard::container::LogOutput::StdOut { message } => {
                        // The reader went away (it failed); keep draining so the exec ends.
                        let _ = sink.send(message).await;
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        let room = MAX_CAPTURE.saturating_sub(stderr.len());
                        stderr.extend_from_slice(&message[..message.len().min(room)]);
                    }
                    _ => {}
                }
            }
        }
        drop(sink);
        let inspected = retry(&DOCKER, || async {
            self.client
                .inspect_exec(&created.id)
                .await
                .map_err(on("inspecting exec in", container))
        })
        .await?;
        Ok((
            inspected.exit_code.unwrap_or(-1),
            String::from_utf8_lossy(&stderr).into_owned(),
        ))
    }

    /// A tar stream of `path` inside a container (running or not), as Docker produces it:
    /// entries are named after the last component of `path`.
    pub fn download(
        &self,
        container: &str,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes, DockerError>> + use<> {
        let client = self.client.clone();
        let container = container.to_string();
        let path = path.to_string();
        // Tried again only until the first byte: once data flowed, a repeat would repeat it.
        let opened = async move {
            let target = format!("{container}:{path}");
            let first = retry(&DOCKER, || async {
                let options = DownloadFromContainerOptions { path: path.clone() };
                let target = target.clone();
                let mut stream = Box::pin(
                    client
                        .download_from_container(&container, Some(options))
                        .map(move |item| item.map_err(on("downloading", &target))),
                );
                match stream.next().await {
                    Some(Err(e)) => Err(e),
                    first => Ok((first, stream)),
                }
            })
            .await;
            match first {
                Ok((first, rest)) => futures_util::stream::iter(first).chain(rest).left_stream(),
                Err(e) => futures_util::stream::iter(Some(Err(e))).right_stream(),
            }
        };
        futures_util::stream::once(opened).flatten()
    }

    /// Creates (without starting) a container that mounts `volume` at `/volume`, so that the
    /// volume can be read through the archive API even when nothing else mounts it or when
    /// the Docker host is remote.
    pub async fn create_reader(&self, image: &str, volume: &str) -> Result<String, DockerError> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["true".to_string()]),
            labels: Some(HashMap::from([(
                "holdfast.dev/reader".to_string(),
                volume.to_string(),
            )])),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:/volume:ro")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .client
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(on("creating a reader container for volume", volume))?;
        Ok(created.id)
    }

    /// Removes a reader container ([`Self::create_reader`]) with the anonymous volumes
    /// Docker made for its image's `VOLUME` lines: the image is any image of the host
    /// (holdfast's own, a database's), and those volumes would pile up, one per volume
    /// and backup. The named volume it mounts is never removed with it.
    pub async fn remove_reader(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        self.client
            .remove_container(id, Some(options))
            .await
            .map_err(on("removing container", id))
    }

    /// Whether a named volume exists. Creating a container that mounts a missing volume
    /// would silently create an empty one, so the API path asks first.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, DockerError> {
        retry(&DOCKER, || async {
            match self.client.inspect_volume(name).await {
                Ok(_) => Ok(true),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(false),
                Err(e) => Err(on("inspecting volume", name)(e)),
            }
        })
        .await
    }

    /// Any image present on the engine, for reader containers.
    pub async fn any_image(&self) -> Result<Option<String>, DockerError> {
        let images = retry(&DOCKER, || async {
            self.client
                .list_images(None::<ListImagesOptions>)
                .await
                .map_err(api("listing images"))
        })
        .await?;
        Ok(images.into_iter().map(|i| i.id).next())
    }

    /// The inspect document of a network, for the recipe.
    pub async fn network(&self, name: &str) -> Result<serde_json::Value, DockerError> {
        let network = retry(&DOCKER, || async {
            self.client
                .inspect_network(name, None)
                .await
                .map_err(on("inspecting network", name))
        })
        .await?;
        Ok(serde_json::to_value(&network).unwrap_or(serde_json::Value::Null))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Engine::connect(Some(&format!("tcp://127.0.0.1:{port}")))
            .await
            .unwrap_err();
        assert!(matches!(e, DockerError::Connect { .. }), "{e}");
        assert_eq!(e.reason(), "unreachable", "{e:?}");
        assert!(e.is_transient());
    }

    #[tokio::test]
    async fn tls_settings_that_cannot_work_are_refused_before_connecting() {
        let folder = tempfile::tempdir().unwrap();
        let tls = |host: &str| Endpoint {
            host: Some(host.to_string()),
            tls: Some(folder.path().to_path_buf()),
        };
        // TLS over the local socket makes no sense: said, not ignored.
        let e = Engine::open(&tls("unix:///var/run/docker.sock"))
            .await
            .unwrap_err();
        assert!(matches!(e, DockerError::TlsNeedsTcp { .. }), "{e}");
        // The first missing file is named, with the flag that points at it.
        let e = Engine::open(&tls("tcp://127.0.0.1:1")).await.unwrap_err();
        let ca = folder.path().join("ca.pem");
        assert!(e.to_string().contains(&ca.display().to_string()), "{e}");
        assert!(e.to_string().contains("--docker-cert-path"), "{e}");
        assert_eq!(e.reason(), "config");
        assert!(!e.is_transient());
        std::fs::write(&ca, "").unwrap();
        let e = Engine::open(&tls("tcp://127.0.0.1:1")).await.unwrap_err();
        assert!(e.to_string().contains("cert.pem"), "{e}");
        // https:// without the certificates to speak it.
        let plain = Endpoint {
            host: Some("https://127.0.0.1:1".to_string()),
            tls: None,
        };
        let e = Engine::open(&plain).await.unwrap_err();
        assert!(matches!(e, DockerError::HttpsNeedsTls { .. }), "{e}");
    }
}
