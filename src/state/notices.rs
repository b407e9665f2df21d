//! The lasting problems each notifier was told of, so a restart neither repeats a message
//! nor forgets what a later success recovers from. Rows are plain strings: what they mean
//! is decided by the notifications' own rules.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{StateDb, StateError, parse_time, query};

/// One remembered notice of one notifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeRow {
    pub notifier: String,
    pub kind: String,
    pub name: String,
    pub event: String,
    /// What within the object it is about (an archive id), or empty.
    pub subject: String,
    pub since: DateTime<Utc>,
    pub last_sent: Option<DateTime<Utc>>,
}

impl StateDb {
    /// Every remembered notice.
    pub fn notices(&self) -> Result<Vec<NoticeRow>, StateError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT notifier, kind, name, event, subject, since, last_sent FROM notices")
            .map_err(query("reading notices"))?;
        let rows = statement
            .query_map([], |row| {
                Ok(NoticeRow {
                    notifier: row.get(0)?,
                    kind: row.get(1)?,
                    name: row.get(2)?,
                    event: row.get(3)?,
                    subject: row.get(4)?,
                    since: parse_time(row.get(5)?),
                    last_sent: row.get::<_, Option<String>>(6)?.map(parse_time),
                })
            })
            .map_err(query("reading notices"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("reading notices"))
    }

    /// Remembers `keep` (replacing rows with the same key) and forgets `forget`, in one
    /// transaction.
    pub fn change_notices(
        &self,
        keep: &[NoticeRow],
        forget: &[NoticeRow],
    ) -> Result<(), StateError> {
        if keep.is_empty() && forget.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(query("recording notices"))?;
        {
            let mut delete = tx
                .prepare_cached(
                    "DELETE FROM notices WHERE notifier = ?1 AND kind = ?2 AND name = ?3 AND event = ?4 AND subject = ?5",
                )
                .map_err(query("forgetting notices"))?;
            for r in forget {
                delete
                    .execute(params![r.notifier, r.kind, r.name, r.event, r.subject])
                    .map_err(query("forgetting notices"))?;
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO notices (notifier, kind, name, event, subject, since, last_sent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(query("recording notices"))?;
            for r in keep {
                insert
                    .execute(params![
                        r.notifier,
                        r.kind,
                        r.name,
                        r.event,
                        r.subject,
                        r.since.to_rfc3339(),
                        r.last_sent.map(|t| t.to_rfc3339()),
                    ])
                    .map_err(query("recording notices"))?;
            }
        }
        tx.commit().map_err(query("recording notices"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_kept_replaced_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let t = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let row = |event: &str, last_sent| NoticeRow {
            notifier: "ops".into(),
            kind: "BackupPolicy".into(),
            name: "nextcloud".into(),
            event: event.into(),
            subject: String::new(),
            since: t,
            last_sent,
        };
        db.change_notices(&[row("Failed", Some(t)), row("Overdue", None)], &[])
            .unwrap();
        let later = t + chrono::Duration::hours(1);
        db.change_notices(&[row("Failed", Some(later))], &[row("Overdue", None)])
            .unwrap();
        let reopened = StateDb::open(dir.path()).unwrap();
        assert_eq!(
            reopened.notices().unwrap(),
            vec![row("Failed", Some(later))]
        );
    }
}
