//! The one function through which Phoenix reads YAML.
//!
//! Every YAML document (desired-state files and the daemon config) goes through
//! [`from_str`], so the parser can be swapped in one place. The parser is
//! [serde-saphyr](https://docs.rs/serde-saphyr): maintained, panic-free and budgeted,
//! where `serde_yaml` is deprecated upstream. Its defaults are lenient in YAML 1.1
//! ways, so the options below pin YAML 1.2 core-schema meaning and hard limits:
//!
//! - `yes`/`no`/`on`/`off` are strings, not booleans (`strict_booleans`);
//! - `0755` and `1_000` are strings, not numbers;
//! - unknown tags such as `!secret` are errors, never silently dropped;
//! - duplicate keys are errors;
//! - at most one document, 1 MiB of input, 64 levels of nesting, and a bounded
//!   alias expansion budget, so an alias bomb fails fast instead of eating memory.
//!
//! serde-saphyr reads about 16,000 one-kilobyte specs a second (issue 2 asks for
//! 50,000): its event layer, not Phoenix's code, takes ~94% of that time, and faster
//! event parsers alone (saphyr-parser, libyaml-safer) stay under or near 50,000 before
//! any deserialisation. So [`from_str`] first tries the small reader in `fast` (in
//! `yaml/fast.rs`) for the plain subset desired-state files are written in: block
//! mappings, block sequences, single-line scalars and flow collections, comments. It
//! declines on anything else (anchors, aliases, tags, block or multi-line scalars,
//! nulls, duplicate keys, deep nesting, a second document, non-ASCII text) and on any
//! value the target type refuses; serde-saphyr then reads the text as before. So
//! serde-saphyr remains the authority for every error message and position and for
//! every construct outside the subset, and the fast path only has to agree with it on
//! what it accepts, which `tests/it/spec_fast_path.rs` checks (values and spec hashes).

use serde::de::DeserializeOwned;

mod fast;

/// Largest YAML input accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Deepest nesting of collections accepted.
pub const MAX_DEPTH: usize = 64;
/// Most events that aliases may replay in one document (alias-bomb guard).
pub const MAX_ALIAS_REPLAY_EVENTS: usize = 100_000;

/// A YAML read failure with its position when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong, without the position.
    pub message: String,
}

impl YamlError {
    /// An error at a known position.
    pub fn at(line: u64, column: u64, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// An error with no position (for example, a whole-file limit).
    pub fn whole(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_documents: 1,
            max_reader_input_bytes: Some(MAX_INPUT_BYTES),
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAY_EVENTS,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        legacy_octal_numbers: false,
        reject_unsupported_tags: true,
        with_snippet: false,
    }
}

/// Deserialize one YAML document into `T`, with YAML 1.2 scalars and hard limits.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_size(text)?;
    if let Some(value) = fast::from_str(text) {
        return Ok(value);
    }
    from_str_reference(text)
}

/// Read `text` with serde-saphyr alone, skipping the fast path. This is what
/// [`from_str`] falls back to, and the reference the differential tests compare the
/// fast path against.
#[doc(hidden)]
pub fn from_str_reference<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_size(text)?;
    serde_saphyr::from_str_with_options(text, options()).map_err(|err| convert(&err))
}

/// The fast path alone: `Some` when it read the document, `None` when it declined.
/// For the differential tests; use [`from_str`].
#[doc(hidden)]
pub fn from_str_fast<T: DeserializeOwned>(text: &str) -> Option<T> {
    if text.len() > MAX_INPUT_BYTES {
        return None;
    }
    fast::from_str(text)
}

fn check_size(text: &str) -> Result<(), YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError::whole(format!(
            "file is {} bytes, larger than the {} byte limit",
            text.len(),
            MAX_INPUT_BYTES
        )));
    }
    Ok(())
}

fn convert(err: &serde_saphyr::Error) -> YamlError {
    let err = err.without_snippet();
    let location = err.location();
    let message = describe(err);
    match location {
        Some(loc) if loc.line() > 0 => YamlError::at(loc.line(), loc.column(), message),
        _ => YamlError::whole(message),
    }
}

/// Phoenix's wording for the errors users meet most; the parser's own text otherwise.
fn describe(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut err = err;
    while let E::AliasError { error, .. } = err {
        err = error;
    }
    match err {
        E::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key `{key}`"),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_string(),
        E::MultipleDocuments { .. }
        | E::Budget {
            breach: B::Documents { .. },
            ..
        } => "a file holds exactly one document; found a second one (`---`)".to_string(),
        E::Budget {
            breach: B::Depth { .. },
            ..
        } => {
            format!("nesting deeper than {MAX_DEPTH} levels")
        }
        E::Budget { breach, .. } => format!("document too large or too complex ({breach:?})"),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => {
            "aliases expand beyond the allowed budget (alias bomb?)".to_string()
        }
        other => clean_message(&other.to_string()),
    }
}

/// serde-saphyr appends " at line N column M" to its messages; the position is
/// reported separately, so drop it from the text.
fn clean_message(message: &str) -> String {
    let message = message.trim();
    match message.rfind(" at line ") {
        Some(idx) if message[idx..].contains("column") => message[..idx].to_string(),
        _ => message.to_string(),
    }
}
