//! Humane durations (`30s`, `2m`, `6h`, `720h`, `1h30m`) as used throughout the specs.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the JSON Schema enforces, so editors flag a bad duration while typing.
/// Each number is capped at nine digits so that a value the schema accepts always parses.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,9}(ms|s|m|h|d))+$";

/// A duration written as a number with a unit, e.g. `30s`, `2m`, `6h`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    pub fn as_duration(&self) -> Duration {
        self.0
    }
}

/// Why a duration string did not parse; the message is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a duration: {reason}; write a number with a unit (ms, s, m, h, d), e.g. 30s, 2m, 6h, 1h30m"
)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DurationError {
    /// What the input most likely meant, written as holdfast reads it: `1 hour` gives
    /// `1h`, `1 hour 30 minutes` gives `1h30m`, `2 weeks` gives `14d`.
    pub fn suggestion(&self) -> Option<String> {
        suggest(&self.input)
    }
}

/// Reads words people write for durations (`10 minutes`, `1 Hour`, `90 secs`, `2 weeks`,
/// `1h 30m`) into the compact form, if every part of the input is understood.
fn suggest(input: &str) -> Option<String> {
    let lower = input.to_lowercase();
    let mut out = String::new();
    let mut rest = lower.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if let Some(after) = rest.strip_prefix("and ") {
            rest = after.trim_start();
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let tail = tail.trim_start();
        let word_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (word, tail) = tail.split_at(word_len);
        let (value, unit) = match word {
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => (number, "ms"),
            "s" | "sec" | "secs" | "second" | "seconds" => (number, "s"),
            "m" | "min" | "mins" | "minute" | "minutes" => (number, "m"),
            "h" | "hr" | "hrs" | "hour" | "hours" => (number, "h"),
            "d" | "day" | "days" => (number, "d"),
            "w" | "week" | "weeks" => (number.checked_mul(7)?, "d"),
            _ => return None,
        };
        out.push_str(&format!("{value}{unit}"));
        rest = tail;
    }
    (out != input && parse_duration(&out).is_ok()).then_some(out)
}

pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    if input.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = input;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let (number, tail) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| err("the number is too large"))?;
        if tail.starts_with(char::is_whitespace) {
            return Err(err("the unit must follow its number without a space"));
        }
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => value
                .checked_mul(60)
                .map(Duration::from_secs)
                .ok_or_else(|| err("the number is too large"))?,
            "h" => value
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(|| err("the number is too large"))?,
            "d" => value
                .checked_mul(86_400)
                .map(Duration::from_secs)
                .ok_or_else(|| err("the number is too large"))?,
            "" => return Err(err("a unit is missing")),
            _ => return Err(err("unknown unit")),
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| err("the total is too large"))?;
        rest = tail;
    }
    Ok(total)
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    /// Prints the largest whole units, so `5400s` reads back as `1h30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        let millis = self.0.subsec_millis();
        if secs == 0 {
            return write!(f, "{millis}ms");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number with a unit (ms, s, m, h, d), e.g. 30s, 2m, 6h, 1h30m.",
            "examples": ["30s", "2m", "6h", "720h"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        let cases = [
            ("30s", 30),
            ("2m", 120),
            ("6h", 21_600),
            ("720h", 2_592_000),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("0s", 0),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_duration(input).unwrap(),
                Duration::from_secs(secs),
                "{input}"
            );
        }
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for input in [
            "",
            "10",
            "m",
            "10 m",
            "10x",
            "1.5h",
            "-1s",
            "10minutes",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(input).is_err(), "{input} should not parse");
        }
    }

    #[test]
    fn words_for_durations_get_the_compact_form_suggested() {
        let suggested = |input: &str| parse_duration(input).unwrap_err().suggestion();
        assert_eq!(suggested("1 hour").as_deref(), Some("1h"));
        assert_eq!(suggested("10 minutes").as_deref(), Some("10m"));
        assert_eq!(suggested("1 Hour 30 Minutes").as_deref(), Some("1h30m"));
        assert_eq!(suggested("1h 30m").as_deref(), Some("1h30m"));
        assert_eq!(suggested("2 days and 3 hours").as_deref(), Some("2d3h"));
        assert_eq!(suggested("2 weeks").as_deref(), Some("14d"));
        assert_eq!(suggested("90secs").as_deref(), Some("90s"));
        assert_eq!(suggested("1.5h"), None);
        assert_eq!(suggested("soon"), None);
        assert_eq!(suggested("10"), None);
        assert_eq!(
            parse_duration("1 hour").unwrap_err().to_string(),
            "`1 hour` is not a duration: the unit must follow its number without a space; write a number with a unit (ms, s, m, h, d), e.g. 30s, 2m, 6h, 1h30m"
        );
    }

    #[test]
    fn displays_in_largest_units() {
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(HumanDuration::from_secs(30).to_string(), "30s");
        assert_eq!(
            HumanDuration(Duration::from_millis(250)).to_string(),
            "250ms"
        );
    }
}
