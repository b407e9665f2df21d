//! Names in a repository: `<host>/<group>/<archive id>/` with `manifest.json` written last
//! and `verification.json` beside it. A group is the policy's or Archive's name; the host
//! folder keeps hosts that share a repository apart, and its `.holdfast/` folder holds the
//! host's own records (the writers' lock, what it has handled).

use chrono::{DateTime, Utc};

/// Written last; its presence is what makes an archive exist.
pub const MANIFEST: &str = "manifest.json";
/// The last verification's result.
pub const RECORD: &str = "verification.json";
/// Suffix of an archive being written.
pub const PARTIAL: &str = ".partial";
/// Suffix of an archive being deleted.
pub const DELETING: &str = ".deleting";
/// The folder of the repository's own records (what each host has handled), beside the
/// groups; its leading dot keeps it from ever being taken for one.
pub const META_DIR: &str = ".holdfast";

/// `<name>-<UTC yyyymmddThhmmssZ>`.
pub fn archive_id(name: &str, at: DateTime<Utc>) -> String {
    format!("{name}-{}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The time encoded in an archive id (`<name>-<yyyymmddThhmmssZ>`).
pub fn time_from_id(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.rsplit('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The group an archive id belongs to: the id without its time stamp.
pub fn group_of(id: &str) -> Option<&str> {
    time_from_id(id)?;
    id.rsplit_once('-').map(|(group, _)| group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_time_and_group() {
        let t = time_from_id("nextcloud-nightly-20261125T030000Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T03:00:00+00:00");
        assert_eq!(
            archive_id("nextcloud-nightly", t),
            "nextcloud-nightly-20261125T030000Z"
        );
        assert_eq!(
            group_of("nextcloud-nightly-20261125T030000Z"),
            Some("nextcloud-nightly")
        );
        assert!(time_from_id("nope").is_none());
        assert!(group_of("nope").is_none());
    }
}
