//! A Repository's `Ready` condition, decided in one place. A Repository is never run: its
//! status says whether its spec is valid and, once holdfast probes it, whether the storage
//! answers.

use crate::spec::RepositorySpec;

/// What a valid Repository's `Ready` condition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryReadiness {
    pub ready: bool,
    /// `Valid` (not probed yet), `Reachable` or `Unreachable`.
    pub reason: &'static str,
    pub message: String,
}

/// The `Ready` condition of a valid Repository. `probe` is the outcome of the last
/// reachability check: `None` while there was none, `Some(Err(why))` when the storage did
/// not answer (`why` names the storage and the error, never a secret). An invalid
/// Repository is Stalled by the usual path and never comes here.
pub fn repository_readiness(
    spec: &RepositorySpec,
    probe: Option<&Result<(), String>>,
) -> RepositoryReadiness {
    let location = format!("{} {}", spec.storage.kind(), spec.location());
    match probe {
        None => RepositoryReadiness {
            ready: true,
            reason: "Valid",
            message: format!("valid; not probed yet ({location})"),
        },
        Some(Ok(())) => RepositoryReadiness {
            ready: true,
            reason: "Reachable",
            message: format!("reachable ({location})"),
        },
        Some(Err(why)) => RepositoryReadiness {
            ready: false,
            reason: "Unreachable",
            message: format!("unreachable ({location}): {why}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::repository::{LocalStorageSpec, StorageSpec};

    fn local() -> RepositorySpec {
        RepositorySpec {
            format: Default::default(),
            password: None,
            storage: StorageSpec {
                local: Some(LocalStorageSpec {
                    path: "/mnt/usb/backups".into(),
                }),
                ..StorageSpec::default()
            },
            encryption: None,
            append_only: false,
        }
    }

    #[test]
    fn a_valid_repository_is_ready_until_a_probe_says_otherwise() {
        let unprobed = repository_readiness(&local(), None);
        assert!(unprobed.ready);
        assert_eq!(unprobed.reason, "Valid");
        assert_eq!(
            unprobed.message,
            "valid; not probed yet (local /mnt/usb/backups)"
        );
        assert_eq!(
            repository_readiness(&local(), Some(&Ok(()))).reason,
            "Reachable"
        );
        let down = repository_readiness(&local(), Some(&Err("no such folder".into())));
        assert!(!down.ready);
        assert_eq!(down.reason, "Unreachable");
        assert!(
            down.message.ends_with(": no such folder"),
            "{}",
            down.message
        );
    }
}
