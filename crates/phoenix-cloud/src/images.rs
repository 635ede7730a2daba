//! [`ImageCache`]: image descriptions kept per image id for [`crate::IMAGE_CACHE_TTL`],
//! so planning every pass and re-checking before each launch do not call
//! DescribeImages for every group every time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use phoenix_core::policy::ImageLookup;

/// Answers per image id, each with the instant it was fetched.
#[derive(Debug, Default)]
pub struct ImageCache {
    entries: Mutex<BTreeMap<String, (Instant, ImageLookup)>>,
}

impl ImageCache {
    /// The cached answers for `ids` younger than `ttl`, and the ids to look up.
    pub fn split(
        &self,
        ids: &[String],
        ttl: Duration,
    ) -> (BTreeMap<String, ImageLookup>, Vec<String>) {
        let entries = self
            .entries
            .lock()
            .expect("image cache lock is never poisoned");
        let mut hits = BTreeMap::new();
        let mut misses = Vec::new();
        for id in ids {
            match entries.get(id) {
                Some((at, lookup)) if at.elapsed() < ttl => {
                    hits.insert(id.clone(), lookup.clone());
                }
                _ if !misses.contains(id) => misses.push(id.clone()),
                _ => {}
            }
        }
        (hits, misses)
    }

    /// Remember fresh answers.
    pub fn store(&self, answers: &BTreeMap<String, ImageLookup>) {
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .expect("image cache lock is never poisoned");
        for (id, lookup) in answers {
            entries.insert(id.clone(), (now, lookup.clone()));
        }
    }

    /// Forget everything (the sim does this when its registry changes).
    pub fn clear(&self) {
        self.entries
            .lock()
            .expect("image cache lock is never poisoned")
            .clear();
    }
}
