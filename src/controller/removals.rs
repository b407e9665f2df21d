//! Deleting archives because their spec is gone, only once it stays gone.
//!
//! Removing an `Archive` spec with `deletionPolicy: Delete` deletes its archives, which
//! cannot be undone. A spec can look gone for a moment without anyone meaning it: a
//! folder emptied and filled again (`rm -rf specs; mkdir specs; cp ...`), a checkout in
//! progress. So a removal is carried out only when a second settled read, at least
//! [`CONFIRM`] after the first one that found it gone, still finds it gone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long a removal must last before archives go.
pub const CONFIRM: Duration = Duration::from_secs(2);

/// The removals seen once and not yet carried out, with when each was first seen.
#[derive(Debug, Default)]
pub struct Removals {
    first_seen: BTreeMap<String, DateTime<Utc>>,
}

/// What to do after one settled read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Gone long enough: delete their archives now.
    pub delete: Vec<String>,
    /// Found gone for the first time: wait.
    pub newly_gone: Vec<String>,
    /// When to read again to confirm the removals still waiting.
    pub recheck_at: Option<DateTime<Utc>>,
}

impl Removals {
    /// The names whose removal waits for confirmation: still candidates for deletion even
    /// though no spec names them any more.
    pub fn waiting(&self) -> impl Iterator<Item = &String> {
        self.first_seen.keys()
    }

    /// Judges one settled read taken at `now`, in which the names in `gone` were not
    /// found. A name that is back is forgotten.
    pub fn judge(&mut self, gone: &BTreeSet<String>, now: DateTime<Utc>) -> Verdict {
        let confirm = chrono::Duration::from_std(CONFIRM).unwrap_or_default();
        self.first_seen.retain(|name, _| gone.contains(name));
        let mut verdict = Verdict::default();
        for name in gone {
            let first = match self.first_seen.get(name) {
                Some(first) => *first,
                None => {
                    self.first_seen.insert(name.clone(), now);
                    verdict.newly_gone.push(name.clone());
                    now
                }
            };
            if now - first >= confirm {
                self.first_seen.remove(name);
                verdict.delete.push(name.clone());
            } else {
                let at = first + confirm;
                verdict.recheck_at = Some(verdict.recheck_at.map_or(at, |r| r.min(at)));
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_removal_is_carried_out_only_when_it_lasts() {
        let mut r = Removals::default();
        let v = r.judge(&names(&["drop"]), at(0));
        assert!(v.delete.is_empty());
        assert_eq!(v.newly_gone, ["drop"]);
        assert_eq!(v.recheck_at, Some(at(2)));
        assert_eq!(r.waiting().collect::<Vec<_>>(), ["drop"]);
        // Still gone, but too soon.
        let v = r.judge(&names(&["drop"]), at(1));
        assert!(v.delete.is_empty() && v.newly_gone.is_empty());
        assert_eq!(v.recheck_at, Some(at(2)));
        // Still gone after the confirmation time: delete, once.
        let v = r.judge(&names(&["drop"]), at(2));
        assert_eq!(v.delete, ["drop"]);
        assert_eq!(v.recheck_at, None);
        assert_eq!(r.waiting().count(), 0);
    }

    #[test]
    fn a_spec_that_comes_back_is_forgotten() {
        let mut r = Removals::default();
        r.judge(&names(&["drop", "other"]), at(0));
        let v = r.judge(&names(&["other"]), at(1));
        assert!(v.delete.is_empty());
        assert_eq!(r.waiting().collect::<Vec<_>>(), ["other"]);
        // Gone again later: the wait starts over.
        let v = r.judge(&names(&["drop", "other"]), at(5));
        assert_eq!(v.delete, ["other"]);
        assert_eq!(v.newly_gone, ["drop"]);
        assert_eq!(v.recheck_at, Some(at(7)));
    }
}
