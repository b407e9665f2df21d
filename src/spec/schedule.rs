//! Cron schedules and IANA time zones, kept as written and checked by validation.
//!
//! Both are stored as the user's text so that one bad value is reported with its
//! position among all other errors, instead of aborting deserialization at the first.

use std::borrow::Cow;

use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A standard 5-field cron expression (`minute hour day-of-month month day-of-week`)
/// or one of `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
///
/// Weekdays count from 0 = Sunday (7 is Sunday too), so `0 3 * * 1` is 03:00 on Mondays,
/// as in every crontab. When both day fields are restricted, either one matching is enough
/// (the classic cron rule).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CronSchedule(pub String);

impl CronSchedule {
    /// Parses the expression; seconds and years fields are refused so that a 6-field
    /// expression written for another tool is not silently read with shifted fields.
    pub fn parse(&self) -> Result<Cron, String> {
        let text = self.0.trim();
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && fields != 5 {
            return Err(format!(
                "`{}` has {fields} field{}; a schedule has exactly 5 (minute hour day-of-month month day-of-week)",
                self.0,
                if fields == 1 { "" } else { "s" }
            ));
        }
        if let Some(nick) = text.strip_prefix('@') {
            if !["hourly", "daily", "weekly", "monthly", "yearly", "annually"]
                .contains(&nick.to_ascii_lowercase().as_str())
            {
                return Err(format!(
                    "`{}` is not a known shorthand; use @hourly, @daily, @weekly, @monthly or @yearly",
                    self.0
                ));
            }
        }
        CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("`{}` is not a valid cron expression: {e}", self.0))
    }
}

impl JsonSchema for CronSchedule {
    fn schema_name() -> Cow<'static, str> {
        "CronSchedule".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "A 5-field cron expression (minute hour day-of-month month day-of-week; 0 or 7 = Sunday) or @hourly, @daily, @weekly, @monthly, @yearly.",
            "examples": ["0 3 * * *", "30 2 * * 1", "@daily"]
        })
    }
}

/// An IANA time zone name such as `Europe/Berlin` or `UTC`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeZoneName(pub String);

impl TimeZoneName {
    pub fn parse(&self) -> Result<Tz, String> {
        self.0
            .parse::<Tz>()
            .map_err(|_| format!("`{}` is not an IANA time zone name", self.0))
    }

    /// The known zone name closest to this one, for a "did you mean" hint.
    pub fn closest_known(&self) -> Option<&'static str> {
        crate::diagnostic::closest(&self.0, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
    }
}

impl JsonSchema for TimeZoneName {
    fn schema_name() -> Cow<'static, str> {
        "TimeZone".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "An IANA time zone name, e.g. Europe/Berlin, America/New_York or UTC.",
            "examples": ["UTC", "Europe/Berlin"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Utc, Weekday};

    fn next_after(expr: &str, after: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        CronSchedule(expr.into())
            .parse()
            .unwrap()
            .find_next_occurrence(&after, false)
            .unwrap()
    }

    #[test]
    fn weekday_one_is_monday() {
        // 2026-11-25 is a Wednesday.
        let mut t = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        for _ in 0..5 {
            t = next_after("0 3 * * 1", t);
            assert_eq!(t.weekday(), Weekday::Mon, "{t}");
            assert_eq!((t.hour(), t.minute()), (3, 0));
        }
        assert_eq!(t.date_naive().to_string(), "2026-12-28");
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        let start = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        assert_eq!(next_after("0 0 * * 0", start).weekday(), Weekday::Sun);
        assert_eq!(next_after("0 0 * * 7", start).weekday(), Weekday::Sun);
    }

    #[test]
    fn shorthands_parse() {
        for expr in ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"] {
            assert!(CronSchedule(expr.into()).parse().is_ok(), "{expr}");
        }
    }

    #[test]
    fn refuses_seconds_and_wrong_field_counts() {
        for expr in [
            "0 0 3 * * *",
            "0 3 * *",
            "",
            "@fortnightly",
            "61 3 * * *",
            "0 3 * * 8",
        ] {
            assert!(
                CronSchedule(expr.into()).parse().is_err(),
                "{expr:?} should be refused"
            );
        }
    }

    #[test]
    fn time_zones_resolve_with_hints() {
        assert!(TimeZoneName("Europe/Berlin".into()).parse().is_ok());
        assert!(TimeZoneName("Europe/Berln".into()).parse().is_err());
        assert_eq!(
            TimeZoneName("Europe/Berln".into()).closest_known(),
            Some("Europe/Berlin")
        );
    }
}
