//! Shared immutable strings for what Phoenix holds once per instance.
//!
//! A fleet of 300,000 instances repeats the same few hundred images, instance types,
//! subnets, tag keys and tag values hundreds of thousands of times. [`Text`] is a
//! reference-counted `str` behind a single word (`arcstr::ArcStr`: the length lives in
//! the allocation, not in the pointer, so a `Text` is 8 bytes where an `Arc<str>` is
//! 16): cloning it copies a pointer, so an inventory, the snapshot built from it and the
//! plans that name its instances share one copy of each string.
//! [`Interner`] hands out one [`Text`] per distinct value (and one [`Tags`] per distinct
//! tag set) for the length of a provider's inventory pass. See docs/benchmarks.md for
//! what this saves at 100k groups.

use arcstr::ArcStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Deref;

use crate::model::Tags;

/// An immutable, cheaply cloned string, one word wide.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(ArcStr);

impl Text {
    /// The text as a `str`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Text {
    /// Whether two texts are one allocation (clones of each other).
    pub fn shares(&self, other: &Text) -> bool {
        ArcStr::ptr_eq(&self.0, &other.0)
    }
}

impl From<&str> for Text {
    fn from(value: &str) -> Self {
        Self(ArcStr::from(value))
    }
}

impl From<String> for Text {
    fn from(value: String) -> Self {
        Self(ArcStr::from(value))
    }
}

impl From<&String> for Text {
    fn from(value: &String) -> Self {
        Self(ArcStr::from(value.as_str()))
    }
}

impl From<&Text> for Text {
    fn from(value: &Text) -> Self {
        value.clone()
    }
}

impl From<Text> for String {
    fn from(value: Text) -> Self {
        value.0.as_str().to_owned()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

/// Hands out one shared [`Text`] per distinct string and one shared [`Tags`] per
/// distinct tag set. Providers keep one for an inventory pass and drop it after.
#[derive(Debug, Default)]
pub struct Interner {
    texts: HashSet<Text>,
    tag_sets: HashSet<Tags>,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of `value`.
    pub fn text(&mut self, value: &str) -> Text {
        if let Some(text) = self.texts.get(value) {
            return text.clone();
        }
        let text = Text::from(value);
        self.texts.insert(text.clone());
        text
    }

    /// Make `text` the shared copy of its value, keeping it as that copy when the value
    /// is new (no allocation either way).
    pub fn share(&mut self, text: &mut Text) {
        match self.texts.get(text.as_str()) {
            Some(shared) => *text = shared.clone(),
            None => {
                self.texts.insert(text.clone());
            }
        }
    }

    /// Forget what nothing outside the interner holds any more, so an interner that
    /// lives as long as its user (a source's loader) does not keep every string it has
    /// ever seen.
    pub fn purge(&mut self) {
        self.texts
            .retain(|text| ArcStr::strong_count(&text.0).is_none_or(|count| count > 1));
        self.tag_sets.retain(|tags| !tags.is_unique());
    }

    /// How many distinct strings it holds.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether it holds no string.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The shared copy of a tag set whose keys and values are interned too.
    pub fn tags<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Tags {
        let tags: Tags = pairs
            .into_iter()
            .map(|(k, v)| (self.text(k), self.text(v)))
            .collect();
        if let Some(shared) = self.tag_sets.get(&tags) {
            return shared.clone();
        }
        self.tag_sets.insert(tags.clone());
        tags
    }

    /// The shared copy of a tag map.
    pub fn tag_map(&mut self, map: &BTreeMap<String, String>) -> Tags {
        self.tags(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_compares_and_prints_like_its_string() {
        let text = Text::from("ami-1");
        assert_eq!(text, "ami-1");
        assert_eq!("ami-1", text);
        assert_eq!(text, String::from("ami-1"));
        assert_ne!(text, "ami-2");
        assert_eq!(format!("{text} {text:?}"), "ami-1 \"ami-1\"");
        assert_eq!(
            serde_json::to_string(&text).expect("a text serializes"),
            "\"ami-1\""
        );
        let back: Text = serde_json::from_str("\"ami-1\"").expect("a JSON string reads as text");
        assert_eq!(back, text);
    }

    #[test]
    fn text_is_one_word() {
        assert_eq!(std::mem::size_of::<Text>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Option<Text>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn interner_shares_equal_strings_and_tag_sets() {
        let mut interner = Interner::new();
        let a = interner.text("t3.micro");
        let b = interner.text("t3.micro");
        assert!(a.shares(&b));
        let one = interner.tags([("phoenix:group", "web"), ("phoenix:owner", "acme")]);
        let two = interner.tags([("phoenix:owner", "acme"), ("phoenix:group", "web")]);
        assert!(one.shares(&two));
        assert_eq!(one.get("phoenix:group"), Some("web"));
        let other = interner.tags([("phoenix:group", "api")]);
        assert!(!one.shares(&other));
    }
}
