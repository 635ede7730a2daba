//! The bodies of the core's fuzz targets (issue 17): plain functions that take any
//! bytes and panic only when an invariant breaks. `fuzz/` runs them under libFuzzer
//! (`scripts/fuzz.sh`); `tests/it/fuzz_bodies.rs` runs them on stable over the committed
//! corpus (`fuzz/corpus/<target>/`) and proptest's random inputs.

use crate::config::Config;
use crate::spec::{InstanceGroup, parse_group};
use crate::yaml;

/// Target `spec`: the desired-state parser and validator. Whatever the input: no
/// panic; an accepted document parses again to the same hash; the fast YAML reader
/// and serde-saphyr agree wherever the fast one reads; an error's position is 1-based.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_group(text) {
        Ok(parsed) => {
            let again = parse_group(text).expect("a document that parsed once parses again");
            assert_eq!(again.hash, parsed.hash, "parsing is deterministic");
            assert_eq!(parsed.group.hash(), parsed.hash, "the hash is the group's");
        }
        Err(err) => {
            assert!(err.line.is_none_or(|line| line >= 1), "{err:?}");
            assert!(err.column.is_none_or(|column| column >= 1), "{err:?}");
            assert!(!err.message.is_empty());
        }
    }
    if let Some(fast) = yaml::from_str_fast::<InstanceGroup>(text) {
        let reference = yaml::from_str_reference::<InstanceGroup>(text)
            .expect("what the fast path reads, serde-saphyr reads too");
        assert_eq!(fast, reference, "the fast path and serde-saphyr agree");
    }
}

/// Target `config`: the daemon configuration parser and validator. No panic, and a
/// refusal always names at least one problem.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(problems) = Config::parse(text) {
        assert!(!problems.is_empty(), "a refused config names its problems");
    }
}
