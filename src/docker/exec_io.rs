//! Feeding data into containers: commands that read their standard input, and tar
//! streams extracted into a container's file system.

use std::io;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::UploadToContainerOptions;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::engine::{DockerError, Engine, ExecOutput, MAX_CAPTURE, count, on};
use super::retry::{DOCKER, retry};

/// How much of the input is read before it is written on to the command.
const CHUNK: usize = 64 * 1024;

/// Appends as much of `data` as the cap leaves room for.
fn capture(into: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_CAPTURE.saturating_sub(into.len());
    into.extend_from_slice(&data[..data.len().min(room)]);
}

impl Engine {
    /// Runs a command in a running container with `stdin` streamed into its standard
    /// input, and collects its output (each stream capped). Standard input is closed when
    /// `stdin` ends, which is what lets a command that reads to the end finish.
    ///
    /// A command that exits before reading everything (a client stopping at its first
    /// error) is not an error here: its exit code and stderr tell why. If reading `stdin`
    /// fails, the command's input is closed early so that it ends, and the read error is
    /// returned: the command has then seen only part of the data.
    pub async fn exec_with_stdin(
        &self,
        container: &str,
        command: &[String],
        env: &[String],
        stdin: impl AsyncRead + Send + Unpin,
        timeout: Duration,
    ) -> Result<ExecOutput, DockerError> {
        self.exec_with_stdin_as(container, None, command, env, stdin, timeout)
            .await
    }

    /// [`Engine::exec_with_stdin`] as another user of the container (`uid`, `uid:gid` or a
    /// name), for commands whose files must stay owned by the service that uses them.
    pub async fn exec_with_stdin_as(
        &self,
        container: &str,
        user: Option<&str>,
        command: &[String],
        env: &[String],
        stdin: impl AsyncRead + Send + Unpin,
        timeout: Duration,
    ) -> Result<ExecOutput, DockerError> {
        let work = self.run_with_stdin(container, user, command, env, stdin);
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                count("exec");
                Err(DockerError::ExecTimeout {
                    container: container.to_string(),
                    command: command.to_vec(),
                    timeout,
                })
            }
        }
    }

    async fn run_with_stdin(
        &self,
        container: &str,
        user: Option<&str>,
        command: &[String],
        env: &[String],
        mut stdin: impl AsyncRead + Send + Unpin,
    ) -> Result<ExecOutput, DockerError> {
        let config = CreateExecOptions {
            cmd: Some(command.to_vec()),
            env: Some(env.to_vec()),
            user: user.map(str::to_string),
            attach_stdin: Some(true),
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
        let StartExecResults::Attached { mut output, input } = started else {
            // Only a detached start returns this, and this start is not detached.
            unreachable!("an attached exec start returned no streams");
        };

        let feed = async move {
            let mut input = input;
            let mut buf = vec![0u8; CHUNK];
            let result = loop {
                let n = match stdin.read(&mut buf).await {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) => break Err(e),
                };
                if input.write_all(&buf[..n]).await.is_err() {
                    // The command no longer reads (it has exited); its exit code says why.
                    return Ok(());
                }
            };
            // Closing our half of the connection is what closes the command's stdin. On a
            // read error too: otherwise the command would wait for more input forever.
            let _ = input.shutdown().await;
            result
        };
        let collect = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            while let Some(item) = output.next().await {
                match item.map_err(on("reading exec output of", container))? {
                    bollard::container::LogOutput::StdOut { message } => {
                        capture(&mut stdout, &message)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        capture(&mut stderr, &message)
                    }
                    _ => {}
                }
            }
            Ok::<_, DockerError>((stdout, stderr))
        };
        tokio::pin!(feed, collect);
        let mut fed = None;
        let collected = loop {
            tokio::select! {
                // The input side first, so that a read error that ended the input is seen
                // even when the output ends in the same instant.
                biased;
                result = &mut feed, if fed.is_none() => fed = Some(result),
                result = &mut collect => break result,
            }
        };
        // The output ends when the command has exited. Input still unsent then has nowhere
        // to go, and Docker would otherwise go on reading it, slowly, to the end.
        let fed = fed.unwrap_or(Ok(()));
        let (stdout, stderr) = collected?;
        fed.map_err(|source| DockerError::ExecInput {
            container: container.to_string(),
            command: command.to_vec(),
            source,
        })?;
        let exit_code = self.exit_code(container, &created.id).await?;
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// The exit code of a finished exec. The output stream can end a moment before Docker
    /// records the exit, so a still-running exec is asked again briefly.
    async fn exit_code(&self, container: &str, exec_id: &str) -> Result<i64, DockerError> {
        for _ in 0..40 {
            let inspected = retry(&DOCKER, || async {
                self.client
                    .inspect_exec(exec_id)
                    .await
                    .map_err(on("inspecting exec in", container))
            })
            .await?;
            if inspected.running != Some(true)
                && let Some(code) = inspected.exit_code
            {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(-1)
    }

    /// Extracts a tar stream into the folder `dir` of a container. Works on stopped
    /// containers too, volumes included, which is how a file is put in place while the
    /// service that owns it is down. Owners and modes come from the tar headers.
    pub async fn upload(
        &self,
        container: &str,
        dir: &str,
        tar: impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    ) -> Result<(), DockerError> {
        let options = UploadToContainerOptions {
            path: dir.to_string(),
            ..Default::default()
        };
        let target = format!("{container}:{dir}");
        self.client
            .upload_to_container(container, Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(on("uploading into", &target))
    }
}
