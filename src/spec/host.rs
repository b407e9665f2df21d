//! `spec.hostSelector`: which hosts of a fleet run an object, so that one specs folder (one
//! git repository) can drive several hosts, each started with its own `--host` and
//! `--host-labels`.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Selects the hosts whose labels include every pair given; an object without one runs on
/// every host it is synced to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSelector {
    /// Host label names and the values they must have, e.g. `role: nas`, or
    /// `holdfast.dev/hostname: nas` for one host by its `--host` name. Only matchLabels is
    /// supported.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl HostSelector {
    /// Whether a host with `labels` is selected: every pair of matchLabels is among them.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}

/// `{role: nas, site: home}`, as a status message shows a selector or a host's labels.
pub struct ShowLabels<'a>(pub &'a BTreeMap<String, String>);

impl fmt::Display for ShowLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {v}")?;
        }
        f.write_str("}")
    }
}

/// Why an object does not run on a host, in one line: the selector, the host and its labels.
pub fn not_selected_message(
    selector: &HostSelector,
    host: &str,
    labels: &BTreeMap<String, String>,
) -> String {
    format!(
        "hostSelector {} does not match this host {host} (labels: {})",
        ShowLabels(&selector.match_labels),
        ShowLabels(labels)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_host_is_selected_when_it_has_every_label() {
        let nas = HostSelector {
            match_labels: labels(&[("role", "nas")]),
        };
        let host = labels(&[("role", "nas"), ("holdfast.dev/hostname", "nas1")]);
        assert!(nas.matches(&host));
        assert!(!nas.matches(&labels(&[("role", "vps")])));
        assert!(!nas.matches(&labels(&[("holdfast.dev/hostname", "nas1")])));
        let both = HostSelector {
            match_labels: labels(&[("role", "nas"), ("site", "home")]),
        };
        assert!(!both.matches(&host));
        assert!(HostSelector::default().matches(&BTreeMap::new()));
    }

    #[test]
    fn the_message_names_selector_host_and_labels() {
        let nas = HostSelector {
            match_labels: labels(&[("role", "nas")]),
        };
        assert_eq!(
            not_selected_message(&nas, "vm", &labels(&[("holdfast.dev/hostname", "vm")])),
            "hostSelector {role: nas} does not match this host vm (labels: {holdfast.dev/hostname: vm})"
        );
    }
}
