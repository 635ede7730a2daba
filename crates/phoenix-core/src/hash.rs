//! The canonical spec hash: the identity of a generation (design section 3).
//!
//! `spec hash = "v1:sha256:" + hex(sha256(canonical(metadata.name, spec.template)))`
//!
//! `canonical` is compact JSON with sorted keys of `{"name": .., "template": ..}`, built
//! from the typed template after YAML parsing. YAML presentation (comments, key order,
//! quoting, flow or block style, indentation, anchors) is gone by then, so it never
//! changes the hash, while every value does: scalars keep their YAML 1.2 type, so the tag
//! value `8080` (an integer) and `"8080"` (a string) hash differently. Absent optional
//! fields and empty lists or maps are left out, so `tags: {}` equals no `tags` at all.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::spec::Template;

/// The algorithm prefix of version 1 hashes.
pub const V1_PREFIX: &str = "v1:sha256:";

/// A spec hash such as `v1:sha256:9f86d0…`. Only version 1 exists today; the version is
/// part of the value so a future `v2` can adopt `v1` instances instead of replacing them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecHash {
    digest: [u8; 32],
}

impl SpecHash {
    /// The raw SHA-256 digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// A short form for humans: the first 12 hex digits.
    pub fn short(&self) -> String {
        hex::encode(&self.digest[..6])
    }
}

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(V1_PREFIX)?;
        f.write_str(&hex::encode(self.digest))
    }
}

impl fmt::Debug for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpecHash({self})")
    }
}

/// Why a string is not a spec hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSpecHashError {
    /// The `v1:sha256:` prefix is missing or names an unknown version.
    #[error("spec hash must start with `{V1_PREFIX}`")]
    UnknownVersion,
    /// The digest is not 64 lowercase hex digits.
    #[error("spec hash digest must be 64 lowercase hex digits")]
    BadDigest,
}

impl FromStr for SpecHash {
    type Err = ParseSpecHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix(V1_PREFIX)
            .ok_or(ParseSpecHashError::UnknownVersion)?;
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ParseSpecHashError::BadDigest);
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut digest).map_err(|_| ParseSpecHashError::BadDigest)?;
        Ok(Self { digest })
    }
}

impl Serialize for SpecHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize)]
struct HashInput<'a> {
    name: &'a str,
    template: &'a Template,
}

/// The canonical JSON text that is hashed: compact, keys sorted at every level.
pub fn canonical_json(name: &str, template: &Template) -> String {
    // serde_json's `Value` keeps object keys in a BTreeMap, so going through it sorts
    // every level. Template fields are plain strings, lists, and typed tag scalars.
    let value = serde_json::to_value(HashInput { name, template })
        .expect("a validated template always serializes to JSON");
    value.to_string()
}

/// The spec hash of a group: `metadata.name` plus `spec.template`.
pub fn spec_hash(name: &str, template: &Template) -> SpecHash {
    let digest = Sha256::digest(canonical_json(name, template).as_bytes());
    SpecHash {
        digest: digest.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let hash = SpecHash { digest: [0xab; 32] };
        let text = hash.to_string();
        assert_eq!(text, format!("v1:sha256:{}", "ab".repeat(32)));
        assert_eq!(text.parse::<SpecHash>(), Ok(hash));
    }

    #[test]
    fn rejects_malformed_hashes() {
        assert_eq!(
            "v2:sha256:00".parse::<SpecHash>(),
            Err(ParseSpecHashError::UnknownVersion)
        );
        assert_eq!(
            "v1:sha256:00".parse::<SpecHash>(),
            Err(ParseSpecHashError::BadDigest)
        );
        let upper = format!("v1:sha256:{}", "AB".repeat(32));
        assert_eq!(
            upper.parse::<SpecHash>(),
            Err(ParseSpecHashError::BadDigest)
        );
    }
}
