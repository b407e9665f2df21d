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
        if let Some(nick) = text.strip_prefix('@')
            && !["hourly", "daily", "weekly", "monthly", "yearly", "annually"]
                .contains(&nick.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "`{}` is not a known shorthand; use @hourly, @daily, @weekly, @monthly or @yearly",
                self.0
            ));
        }
        if let Some(problem) = out_of_range(text) {
            return Err(format!("`{}` is not a valid schedule: {problem}", self.0));
        }
        CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("`{}` is not a valid cron expression: {e}", self.0))
    }
}

/// The five fields of a schedule, in order, with the numbers each takes.
const CRON_FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// The first number outside its field's range, named with the field (the cron library
/// only says "Number out of bounds"). Names (`JAN`, `MON`) and `*`, `?`, `L`, `W`, `#`
/// are left to the library.
fn out_of_range(text: &str) -> Option<String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    for (place, (value, &(name, low, high))) in fields.iter().zip(CRON_FIELDS.iter()).enumerate() {
        for item in value.split(',') {
            let range = item.split_once('/').map_or(item, |(range, _)| range);
            for bound in range.split('-') {
                let Ok(number) = bound.parse::<u32>() else {
                    continue;
                };
                if !(low..=high).contains(&number) {
                    return Some(format!(
                        "{name} {number} is out of range; the {name} field (field {} of 5) takes {low}-{high}",
                        place + 1
                    ));
                }
            }
        }
    }
    None
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

/// A moment given in RFC 3339 with its offset, such as `2026-12-24T03:00:00+01:00`: when a
/// `runAt` object runs, once. Kept as written and checked by validation, like a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunAt(pub String);

impl RunAt {
    /// The instant it names. The offset is required: a time without one would be read in
    /// some zone the writer did not choose.
    pub fn parse(&self) -> Result<chrono::DateTime<chrono::Utc>, String> {
        chrono::DateTime::parse_from_rfc3339(self.0.trim())
            .map(|t| t.to_utc())
            .map_err(|e| {
                format!(
                    "`{}` is not an RFC 3339 time with an offset ({e}), e.g. 2026-12-24T03:00:00+01:00 or 2026-12-24T02:00:00Z",
                    self.0
                )
            })
    }
}

impl JsonSchema for RunAt {
    fn schema_name() -> Cow<'static, str> {
        "RunAt".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "minLength": 1,
            "description": "An RFC 3339 time with its offset; it runs once, then. A time in the past runs at once.",
            "examples": ["2026-12-24T03:00:00+01:00", "2026-12-24T02:00:00Z"]
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
    fn a_number_out_of_range_names_its_field_and_the_range() {
        let cases = [
            (
                "0 25 * * *",
                "hour 25 is out of range; the hour field (field 2 of 5) takes 0-23",
            ),
            (
                "61 3 * * *",
                "minute 61 is out of range; the minute field (field 1 of 5) takes 0-59",
            ),
            (
                "0 3 0 * *",
                "day-of-month 0 is out of range; the day-of-month field (field 3 of 5) takes 1-31",
            ),
            (
                "0 3 * 1-13 *",
                "month 13 is out of range; the month field (field 4 of 5) takes 1-12",
            ),
            (
                "0 3 * * 1,8",
                "day-of-week 8 is out of range; the day-of-week field (field 5 of 5) takes 0-7",
            ),
        ];
        for (expr, expected) in cases {
            let error = CronSchedule(expr.into()).parse().unwrap_err();
            assert!(error.contains(expected), "{expr}: {error}");
        }
        assert_eq!(
            CronSchedule("0 25 * * *".into()).parse().unwrap_err(),
            "`0 25 * * *` is not a valid schedule: hour 25 is out of range; the hour field (field 2 of 5) takes 0-23"
        );
        for fine in ["*/15 0-23 1-31 1-12 0-7", "0 3 * JAN-DEC MON-FRI"] {
            assert!(CronSchedule(fine.into()).parse().is_ok(), "{fine}");
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
