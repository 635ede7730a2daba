//! [`SortedMap`]: a small, read-mostly map stored as one exact-size slice sorted by key.
//!
//! The spec's free-form maps (`metadata.labels`, `spec.template.tags`) hold a handful of
//! entries and are read far more often than changed, 100,000 times over in a large
//! repository. A `BTreeMap` allocates a whole node (over 500 bytes for string pairs)
//! even for one entry; this map allocates exactly its entries and nothing when empty.
//!
//! It behaves like the `BTreeMap` it replaces wherever the spec relies on it:
//!
//! - iteration is in ascending key order;
//! - serializing writes a map in that order, so JSON, YAML and the spec hash are the
//!   same bytes as before;
//! - deserializing accepts any map. Equal keys keep the *last* value and the first key,
//!   as `BTreeMap::insert` does (YAML duplicates are refused earlier, by the parser; what
//!   can still arrive is, for example, `1` and `"1"` read as the same string key, or a
//!   JSON object with a repeated key);
//! - `Debug` prints `{k: v, ..}`, and equality compares entries in order.
//!
//! Lookups are binary searches; [`SortedMap::insert`] and [`SortedMap::remove`] copy the
//! slice and are meant for tests and small edits, not bulk building (collect instead).
//!
//! The slice is shared (`Arc`): a clone is a reference count, so instance tag sets
//! ([`crate::model::Tags`], the same map) can be interned and shared by every instance
//! launched together, and an edit copies the slice first (copy on write). An empty map
//! shares one static allocation.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// A map stored as a shared slice of `(key, value)` pairs sorted by key, keys unique.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortedMap<K, V> {
    entries: Arc<[(K, V)]>,
}

impl<K, V> SortedMap<K, V> {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        Self {
            entries: Arc::default(),
        }
    }

    /// How many entries the map holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in ascending key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            inner: self.entries.iter(),
        }
    }

    /// The keys in ascending order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values in ascending key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The entries as a slice, sorted by key.
    pub fn as_slice(&self) -> &[(K, V)] {
        &self.entries
    }

    /// Whether two maps share one allocation (an interner made them).
    pub fn shares(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries)
    }

    /// Whether this is the only handle on its allocation.
    pub(crate) fn is_unique(&self) -> bool {
        Arc::strong_count(&self.entries) == 1
    }
}

impl<K: Clone, V: Clone> SortedMap<K, V> {
    /// The entries, mutable (copied first if shared). Crate-private because a caller
    /// must keep the keys in order: it is for swapping a key or value for an equal one
    /// (a shared copy).
    pub(crate) fn entries_mut(&mut self) -> &mut [(K, V)] {
        Arc::make_mut(&mut self.entries)
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// Build from pairs in any order. Of equal keys, the first key and the last value
    /// stay, as if each pair had been inserted into a `BTreeMap` in turn.
    pub fn from_vec(mut entries: Vec<(K, V)>) -> Self {
        // Stable, so equal keys keep their input order for the dedup below.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                std::mem::swap(&mut later.1, &mut kept.1);
                true
            } else {
                false
            }
        });
        // Exactly the entries: the shared slice has no spare capacity.
        Self {
            entries: entries.into(),
        }
    }

    fn search<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.search(key).ok().map(|i| &self.entries[i].1)
    }

    /// The stored key and value for `key`.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.search(key).ok().map(|i| {
            let (k, v) = &self.entries[i];
            (k, v)
        })
    }

    /// Whether the map holds `key`.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.search(key).is_ok()
    }
}

impl<K: Ord + Clone, V: Clone> SortedMap<K, V> {
    /// Set `key` to `value`; returns the previous value. Like `BTreeMap::insert`, an
    /// existing key is kept and only its value replaced. Copies the slice when the key
    /// is new (or the slice is shared).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.search(&key) {
            Ok(i) => Some(std::mem::replace(
                &mut Arc::make_mut(&mut self.entries)[i].1,
                value,
            )),
            Err(i) => {
                let mut entries = self.entries.to_vec();
                entries.insert(i, (key, value));
                self.entries = entries.into();
                None
            }
        }
    }

    /// Remove `key`; returns its value. Copies the slice when the key was present.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.search(key).ok()?;
        let mut entries = self.entries.to_vec();
        let (_, value) = entries.remove(i);
        self.entries = entries.into();
        Some(value)
    }
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_vec(iter.into_iter().collect())
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for SortedMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        Self::from_vec(Vec::from(entries))
    }
}

impl<K, V> From<std::collections::BTreeMap<K, V>> for SortedMap<K, V> {
    fn from(map: std::collections::BTreeMap<K, V>) -> Self {
        // Already sorted and unique.
        Self {
            entries: map.into_iter().collect(),
        }
    }
}

impl<K, Q, V> std::ops::Index<&Q> for SortedMap<K, V>
where
    K: Ord + Borrow<Q>,
    Q: Ord + ?Sized,
{
    type Output = V;

    /// The value for `key`; panics when it is absent, like `BTreeMap`'s index.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

/// The iterator of [`SortedMap::iter`]: `(&K, &V)` in ascending key order.
#[derive(Debug, Clone)]
pub struct Iter<'a, K, V> {
    inner: std::slice::Iter<'a, (K, V)>,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|(k, v)| (k, v))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<K: Clone, V: Clone> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        // The slice may be shared, so its entries are cloned out.
        let entries: Vec<(K, V)> = self.entries.iter().cloned().collect();
        entries.into_iter()
    }
}

impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    /// A map in ascending key order: what `BTreeMap` writes.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K, V> Deserialize<'de> for SortedMap<K, V>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + Ord,
            V: Deserialize<'de>,
        {
            type Value = SortedMap<K, V>;

            /// The words `BTreeMap` uses, so type errors read as before.
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // Trust the hint only up to a few KiB, as serde does for its own maps.
                let cap = MAX_PREALLOC_BYTES / std::mem::size_of::<(K, V)>().max(1);
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(cap));
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(SortedMap::from_vec(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Most bytes preallocated from a deserializer's size hint.
const MAX_PREALLOC_BYTES: usize = 4096;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn pairs(items: &[(&str, i64)]) -> Vec<(String, i64)> {
        items.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    }

    /// What a `BTreeMap` built by inserting the same pairs in turn holds.
    fn btree(items: &[(&str, i64)]) -> BTreeMap<String, i64> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs(items) {
            map.insert(k, v);
        }
        map
    }

    #[test]
    fn iterates_in_key_order_like_a_btree_map() {
        let items = [("b", 1), ("a", 2), ("c", 3), ("aa", 4), ("B", 5)];
        let map: SortedMap<String, i64> = pairs(&items).into_iter().collect();
        let expected = btree(&items);
        assert!(map.iter().eq(expected.iter()));
        assert!(map.keys().eq(expected.keys()));
        assert!(map.values().eq(expected.values()));
        assert_eq!(map.len(), 5);
        assert_eq!(format!("{map:?}"), format!("{expected:?}"));
        assert_eq!(map, SortedMap::from(expected));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_like_btree_map_insert() {
        let items = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("b", 5), ("a", 6)];
        let map: SortedMap<String, i64> = pairs(&items).into_iter().collect();
        assert!(map.iter().eq(btree(&items).iter()));
        assert_eq!(map.get("a"), Some(&6));
        assert_eq!(map.get("b"), Some(&5));
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn equal_keys_keep_the_first_key() {
        /// Ordered by the first field only, so two equal keys can still be told apart.
        #[derive(Debug, Clone, Copy)]
        struct Loose(u8, u8);
        impl PartialEq for Loose {
            fn eq(&self, other: &Self) -> bool {
                self.0 == other.0
            }
        }
        impl Eq for Loose {}
        impl PartialOrd for Loose {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Loose {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.cmp(&other.0)
            }
        }
        let items = [(Loose(1, 0), "x"), (Loose(1, 1), "y")];
        let map = SortedMap::from(items);
        // Inserted in turn, as serde's `BTreeMap` impl does (`collect` keeps the last key).
        let mut tree = BTreeMap::new();
        for (k, v) in items {
            tree.insert(k, v);
        }
        let (key, value) = map.iter().next().expect("one entry");
        let (tree_key, tree_value) = tree.iter().next().expect("one entry");
        assert_eq!((key.1, *value), (tree_key.1, *tree_value));
        assert_eq!((key.1, *value), (0, "y"));
    }

    #[test]
    fn lookups_and_edits() {
        let mut map = SortedMap::from([("b".to_string(), 2), ("a".to_string(), 1)]);
        assert!(map.contains_key("a"));
        assert!(!map.contains_key("z"));
        assert_eq!(map["b"], 2);
        assert_eq!(map.get_key_value("a"), Some((&"a".to_string(), &1)));
        assert_eq!(map.insert("c".into(), 3), None);
        assert_eq!(map.insert("a".into(), 10), Some(1));
        assert_eq!(map.remove("b"), Some(2));
        assert_eq!(map.remove("b"), None);
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            [(&"a".to_string(), &10), (&"c".to_string(), &3)]
        );
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [("a".to_string(), 10), ("c".to_string(), 3)]
        );
        let empty: SortedMap<String, i64> = SortedMap::default();
        assert!(empty.is_empty());
        assert_eq!(empty.iter().next(), None);
        assert_eq!(empty.get("a"), None);
    }

    #[test]
    fn serializes_exactly_as_a_btree_map() {
        let items = [("zeta", 1), ("alpha", -2), ("mid", 3)];
        let map: SortedMap<String, i64> = pairs(&items).into_iter().collect();
        let tree = btree(&items);
        assert_eq!(
            serde_json::to_string(&map).expect("serializes"),
            serde_json::to_string(&tree).expect("serializes")
        );
        assert_eq!(
            serde_json::to_value(&map).expect("serializes"),
            serde_json::to_value(&tree).expect("serializes")
        );
        let empty: SortedMap<String, i64> = SortedMap::new();
        assert_eq!(serde_json::to_string(&empty).expect("serializes"), "{}");
    }

    #[test]
    fn serde_round_trip_and_errors_match_btree_map() {
        for text in [
            r#"{"b": 1, "a": 2}"#,
            r#"{"b": 1, "a": 2, "b": 3}"#,
            r#"{}"#,
            r#"null"#,
            r#"[1]"#,
            r#"{"a": "x"}"#,
        ] {
            let ours = serde_json::from_str::<SortedMap<String, i64>>(text);
            let theirs = serde_json::from_str::<BTreeMap<String, i64>>(text);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert!(ours.iter().eq(theirs.iter()), "{text}");
                    let back = serde_json::to_string(&ours).expect("serializes");
                    assert_eq!(back, serde_json::to_string(&theirs).expect("serializes"));
                    let again: SortedMap<String, i64> =
                        serde_json::from_str(&back).expect("round trip");
                    assert_eq!(again, ours);
                }
                (Err(ours), Err(theirs)) => {
                    assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
                }
                (ours, theirs) => panic!("{text}: {ours:?} versus {theirs:?}"),
            }
        }
    }

    #[test]
    fn yaml_reads_like_btree_map() {
        for text in [
            "b: 1\na: 2\n",
            "{b: 1, a: 2}\n",
            "b: 1\na: 2\nb: 3\n",
            "{1: 5, \"1\": 6}\n",
            "[1]\n",
            "a: x\n",
        ] {
            let ours = crate::yaml::from_str::<SortedMap<String, i64>>(text);
            let theirs = crate::yaml::from_str::<BTreeMap<String, i64>>(text);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => assert!(ours.iter().eq(theirs.iter()), "{text}"),
                (Err(ours), Err(theirs)) => assert_eq!(ours, theirs, "{text}"),
                (ours, theirs) => panic!("{text}: {ours:?} versus {theirs:?}"),
            }
        }
    }

    #[test]
    fn many_equal_keys_collapse_to_the_last_value() {
        let map: SortedMap<String, i64> = (0..100).map(|i| ("k".to_string(), i)).collect();
        assert_eq!(map.as_slice(), [("k".to_string(), 99)]);
        let tree: BTreeMap<String, i64> = (0..100).map(|i| ("k".to_string(), i)).collect();
        assert!(map.iter().eq(tree.iter()));
    }
}
