//! The one humantime (de)serializer for durations, used by the spec and the config.
//!
//! Durations are written as humantime strings everywhere (`30s`, `5m`, `1h 30m`).
//! Use it as `#[serde(with = "phoenix_core::duration")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de};

/// Parse a humantime duration such as `30s` or `1h 30m`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration `{text}`: {err} (examples: 30s, 5m, 1h 30m)"))
}

/// Render a duration the way it is written in files.
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// serde `deserialize_with` for a humantime string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = DurationText::deserialize(deserializer)?;
    parse(&text.0).map_err(de::Error::custom)
}

/// serde `serialize_with` rendering a humantime string.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// A duration must be written as a string; a bare number has no unit and is refused.
struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration with a unit, such as 30s or 5m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit; write e.g. `{v}s`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit; write e.g. `{v}s`"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humantime() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse("soon").is_err());
        assert_eq!(format(Duration::from_secs(300)), "5m");
    }
}

/// `#[serde(with = "phoenix_core::duration::option")]` for an optional humantime string.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    /// serde `deserialize_with`: a humantime string (or null) to `Option<Duration>`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<super::DurationText>::deserialize(deserializer)? {
            Some(text) => super::parse(&text.0).map(Some).map_err(de::Error::custom),
            None => Ok(None),
        }
    }

    /// serde `serialize_with`: `None` as null, else a humantime string.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }
}
