//! What a failed Docker call was and whether trying again may help: the error every
//! operation of [`super::engine`] returns, its fixed words for metrics and logs, and the
//! process-wide count of failures by operation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("connecting to Docker at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error(
        "reading {} (--docker-cert-path: TLS to Docker needs ca.pem, cert.pem and key.pem there): {source}",
        path.display()
    )]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--docker-tls-verify needs a tcp:// Docker endpoint, not {endpoint}: TLS is for Docker reached over the network"
    )]
    TlsNeedsTcp { endpoint: String },
    #[error(
        "the Docker endpoint {endpoint} speaks TLS: give --docker-tls-verify and --docker-cert-path (or DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)"
    )]
    HttpsNeedsTls { endpoint: String },
    #[error("Docker {operation}: {source}")]
    Api {
        operation: &'static str,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("{operation} {target}: {source}")]
    On {
        operation: &'static str,
        target: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("running {command:?} in {container} took longer than {timeout:?}")]
    ExecTimeout {
        container: String,
        command: Vec<String>,
        timeout: Duration,
    },
    /// The data meant for a command's standard input could not be read, so the command
    /// saw it cut short. Not counted as a failed Docker call: the data was at fault.
    #[error("reading the input of {command:?} in {container}: {source}")]
    ExecInput {
        container: String,
        command: Vec<String>,
        #[source]
        source: std::io::Error,
    },
    /// A call that failed each time it was tried (see [`super::retry`]).
    #[error("{last} (tried {attempts} times over {:.1} s)", elapsed.as_secs_f64())]
    Retried {
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: Box<DockerError>,
    },
}

impl DockerError {
    /// A fixed word for metrics and logs about what failed.
    pub fn operation(&self) -> &'static str {
        match self {
            DockerError::Connect { .. }
            | DockerError::TlsFile { .. }
            | DockerError::TlsNeedsTcp { .. }
            | DockerError::HttpsNeedsTls { .. } => "connect",
            DockerError::Api { operation, .. } | DockerError::On { operation, .. } => operation,
            DockerError::ExecTimeout { .. } | DockerError::ExecInput { .. } => "exec",
            DockerError::Retried { last, .. } => last.operation(),
        }
    }

    /// Whether trying again later may succeed: the engine could not be reached, the
    /// connection broke, it did not answer in time or failed on its side (a 5xx), or a
    /// command ran out of time. What the engine refused (a 4xx: no such container, a
    /// conflict), a response holdfast cannot read and a bad endpoint stand.
    pub fn is_transient(&self) -> bool {
        self.class().1
    }

    /// Why the call failed, as a fixed word for metrics labels and logs: `unreachable`,
    /// `transport`, `timeout`, `engine_error` (a 5xx), `not_found`, `conflict`, `rejected`
    /// (another 4xx), `permission_denied`, `protocol`, `stream`, `config`, `exec_timeout`
    /// or `exec_input`.
    pub fn reason(&self) -> &'static str {
        self.class().0
    }

    fn class(&self) -> (&'static str, bool) {
        match self {
            DockerError::Connect { source, .. }
            | DockerError::Api { source, .. }
            | DockerError::On { source, .. } => classify(source),
            DockerError::TlsFile { .. }
            | DockerError::TlsNeedsTcp { .. }
            | DockerError::HttpsNeedsTls { .. } => ("config", false),
            DockerError::ExecTimeout { .. } => ("exec_timeout", true),
            DockerError::ExecInput { source, .. } => ("exec_input", io_transient(source)),
            DockerError::Retried { last, .. } => last.class(),
        }
    }
}

/// The reason and transience of a bollard error.
fn classify(error: &bollard::errors::Error) -> (&'static str, bool) {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError { status_code, .. } => match status_code {
            404 => ("not_found", false),
            409 => ("conflict", false),
            500..=599 => ("engine_error", true),
            _ => ("rejected", false),
        },
        E::RequestTimeoutError => ("timeout", true),
        E::SocketNotFoundError(_) => ("unreachable", true),
        E::IOError { err } => classify_io(Some(err)),
        // The connection failed or broke: the cause, when there is one, is an io::Error
        // somewhere down the chain.
        E::HyperResponseError { .. } | E::HyperLegacyError { .. } => classify_io(io_cause(error)),
        E::DockerStreamError { .. } | E::DockerContainerWaitError { .. } => ("stream", false),
        E::UnsupportedURISchemeError { .. } => ("config", false),
        _ => ("protocol", false),
    }
}

/// A transport failure by its io::Error, if any: most are worth another try.
fn classify_io(error: Option<&std::io::Error>) -> (&'static str, bool) {
    use std::io::ErrorKind as K;
    match error.map(std::io::Error::kind) {
        Some(K::PermissionDenied) => ("permission_denied", false),
        Some(K::TimedOut) => ("timeout", true),
        Some(
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::NotFound
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable,
        ) => ("unreachable", true),
        _ => ("transport", true),
    }
}

/// The first io::Error in an error's chain of sources.
fn io_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        next = e.source();
    }
    None
}

/// Reading a command's input failed for a reason that may pass.
fn io_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        error.kind(),
        K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
    )
}

/// Failed Docker calls by operation, for the metrics. Process-wide because every engine
/// handle talks to the same daemon, and the count is what an operator alerts on.
static ERRORS: std::sync::Mutex<BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(BTreeMap::new());

pub(super) fn count(operation: &'static str) {
    let mut errors = ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    *errors.entry(operation).or_default() += 1;
}

/// How many Docker calls failed so far, by operation.
pub fn error_counts() -> Vec<(&'static str, u64)> {
    let errors = ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    errors.iter().map(|(op, n)| (*op, *n)).collect()
}

pub(super) fn on(
    operation: &'static str,
    target: &str,
) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let target = target.to_string();
    move |source| {
        count(operation);
        DockerError::On {
            operation,
            target,
            source: Box::new(source),
        }
    }
}

pub(super) fn api(operation: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    move |source| {
        count(operation);
        DockerError::Api {
            operation,
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status_code: u16) -> DockerError {
        DockerError::On {
            operation: "stopping container",
            target: "nextcloud-db-1".into(),
            source: Box::new(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: "boom".into(),
            }),
        }
    }

    #[test]
    fn engine_failures_are_transient_and_refusals_final() {
        let e = answered(500);
        assert_eq!(
            e.to_string(),
            "stopping container nextcloud-db-1: Docker responded with status code 500: boom"
        );
        assert!(e.is_transient());
        assert_eq!(e.reason(), "engine_error");
        assert_eq!(e.operation(), "stopping container");

        for (status, reason) in [(404, "not_found"), (409, "conflict"), (400, "rejected")] {
            let e = answered(status);
            assert!(!e.is_transient(), "{status}");
            assert_eq!(e.reason(), reason);
        }

        let e = DockerError::Api {
            operation: "listing containers",
            source: Box::new(bollard::errors::Error::RequestTimeoutError),
        };
        assert!(e.is_transient());
        assert_eq!(e.reason(), "timeout");

        let e = DockerError::Api {
            operation: "listing containers",
            source: Box::new(bollard::errors::Error::JsonDataError {
                message: "x".into(),
                column: 1,
            }),
        };
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "protocol");
    }

    #[test]
    fn commands_out_of_time_are_transient_and_bad_input_final() {
        let e = DockerError::ExecTimeout {
            container: "db".into(),
            command: vec!["pg_dumpall".into()],
            timeout: Duration::from_secs(1),
        };
        assert!(e.is_transient());
        assert_eq!(e.reason(), "exec_timeout");
        let e = DockerError::ExecInput {
            container: "db".into(),
            command: vec!["psql".into()],
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "bad zstd frame"),
        };
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "exec_input");
    }
}
