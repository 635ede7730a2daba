//! Times on the wire: the one home of RFC 3339 formatting and parsing.
//!
//! Every time Phoenix shows (the HTTP API, plan notes, alert bodies) is RFC 3339 in UTC:
//! [`rfc3339`] writes whole seconds (`2026-03-29T01:00:00Z`), [`rfc3339_millis`]
//! milliseconds (alert timestamps). [`parse_rfc3339`] reads what an operator writes,
//! with any UTC offset (`2026-12-05T18:00:00+01:00`) or `Z`; [`parse_rfc3339_lenient`]
//! UTC times without `Z` or with a space (config values, EC2 dates); [`serde_rfc3339`] /
//! [`serde_rfc3339_opt`] are the serde adapters. A time before the Unix epoch, which
//! Phoenix never records, is written as the epoch rather than failing.
//!
//! Pure: nothing here reads the clock.

use std::time::{Duration, SystemTime};

/// Why a text is not an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text does not parse.
    #[error("`{text}` is not an RFC 3339 time (e.g. 2026-12-05T18:00:00Z): {reason}")]
    Syntax {
        /// As written (at most 64 characters of it).
        text: String,
        /// The parser's reason.
        reason: String,
    },
    /// The time is before the Unix epoch or beyond what the platform holds.
    #[error("`{text}` is out of range")]
    Range {
        /// As written.
        text: String,
    },
}

/// `t`, or the epoch for a time before it.
fn clamped(t: SystemTime) -> SystemTime {
    t.max(SystemTime::UNIX_EPOCH)
}

/// RFC 3339 in UTC with whole seconds, e.g. `2026-03-29T01:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    display_rfc3339(t).to_string()
}

/// [`rfc3339`] as a `Display` value, for writing into a buffer without a `String` of its
/// own (serialisers writing many times).
pub fn display_rfc3339(t: SystemTime) -> impl std::fmt::Display {
    humantime::format_rfc3339_seconds(clamped(t))
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-03-29T01:00:00.250Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(clamped(t)).to_string()
}

/// Read an RFC 3339 time with `Z` or any UTC offset.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, TimeError> {
    let shown = || text.chars().take(64).collect::<String>();
    let timestamp: jiff::Timestamp =
        text.trim()
            .parse()
            .map_err(|e: jiff::Error| TimeError::Syntax {
                text: shown(),
                reason: e.to_string(),
            })?;
    let secs =
        u64::try_from(timestamp.as_second()).map_err(|_| TimeError::Range { text: shown() })?;
    let nanos = u32::try_from(timestamp.subsec_nanosecond()).unwrap_or(0);
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| TimeError::Range { text: shown() })
}

/// Read an RFC 3339-like UTC time as people and some APIs write it: `T` or a space
/// between date and time, `Z` optional, fractions allowed, no other offset
/// (`2026-01-01 00:00:00`). For config values and provider timestamps; operator input on
/// the API goes through [`parse_rfc3339`].
pub fn parse_rfc3339_lenient(text: &str) -> Result<SystemTime, TimeError> {
    humantime::parse_rfc3339_weak(text.trim()).map_err(|e| TimeError::Syntax {
        text: text.chars().take(64).collect(),
        reason: e.to_string(),
    })
}

/// Serde adapter: a `SystemTime` as an RFC 3339 string (whole seconds).
pub mod serde_rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::display_rfc3339(*t))
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: an optional `SystemTime` as an RFC 3339 string or `null`.
pub mod serde_rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serde_rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_rfc3339(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_utc_whole_seconds_and_millis_and_clamps_before_the_epoch() {
        let t = at(1_774_746_000) + Duration::from_millis(250);
        assert_eq!(rfc3339(t), "2026-03-29T01:00:00Z");
        assert_eq!(rfc3339_millis(t), "2026-03-29T01:00:00.250Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn parses_z_and_offsets_and_names_what_is_wrong() {
        assert_eq!(parse_rfc3339("2026-03-29T01:00:00Z"), Ok(at(1_774_746_000)));
        assert_eq!(
            parse_rfc3339("2026-03-29T03:00:00+02:00"),
            Ok(at(1_774_746_000))
        );
        assert_eq!(
            parse_rfc3339("2026-03-29T01:00:00.5Z"),
            Ok(at(1_774_746_000) + Duration::from_millis(500))
        );
        for bad in ["", "tomorrow", "2026-03-29", "2026-13-01T00:00:00Z"] {
            let err = parse_rfc3339(bad).expect_err(bad);
            assert!(err.to_string().contains("RFC 3339"), "{bad}: {err}");
        }
        assert!(matches!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            Err(TimeError::Range { .. })
        ));
    }

    #[test]
    fn the_lenient_reader_takes_utc_without_z_or_with_a_space() {
        for text in [
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:00:00",
            "2026-03-29 01:00:00",
            " 2026-03-29T01:00:00Z ",
        ] {
            assert_eq!(parse_rfc3339_lenient(text), Ok(at(1_774_746_000)), "{text}");
        }
        let err = parse_rfc3339_lenient("yesterday").expect_err("not a time");
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
