//! A Repository's `Ready` condition, decided in one place. A Repository is never run: its
//! status says whether its spec is valid and, once holdfast probes it, whether the storage
//! answers.

use crate::spec::RepositorySpec;
use crate::spec::repository::RepositoryFormat;

/// What a valid Repository's `Ready` condition says; its message names the storage and
/// where (`local /mnt/usb`), and `restic on` before them for a restic repository.
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
    let mut location = format!("{} {}", spec.storage.kind(), spec.location());
    // A restic repository is read by other tools too: say which kind it is.
    if spec.format == RepositoryFormat::Restic {
        location = format!("restic on {location}");
    }
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
            host_selector: None,
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

    #[test]
    fn a_restic_repository_says_so() {
        let mut restic = local();
        restic.format = RepositoryFormat::Restic;
        assert_eq!(
            repository_readiness(&restic, None).message,
            "valid; not probed yet (restic on local /mnt/usb/backups)"
        );
        assert_eq!(
            repository_readiness(&restic, Some(&Ok(()))).message,
            "reachable (restic on local /mnt/usb/backups)"
        );
    }
}
