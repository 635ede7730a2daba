//! The sim cloud's in-memory state: a dense table of compact instance records whose
//! strings (images, types, subnets, tags) are interned, so a million instances fit in
//! well under 100 MB and a full scan takes milliseconds.
//!
//! Everything here is deterministic: the same records applied in the same order give
//! the same world. Wall-clock times are passed in as milliseconds since the epoch.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use phoenix_core::Text;
use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Tags};
use phoenix_core::tags;
use serde::{Deserialize, Serialize};

/// "No subnet" in a slot.
pub(crate) const NONE: u32 = u32::MAX;

/// Interns values of one type; ids are indexes into `values`.
///
/// The lookup table holds only ids (4 bytes each) and hashes the values where they are
/// stored, so each value is kept once: a `HashMap<T, u32>` would keep a second copy of
/// every value (for tag sets, a second heap allocation each).
#[derive(Debug, Default)]
pub(crate) struct Interner<T: Eq + Hash> {
    pub(crate) values: Vec<T>,
    ids: HashTable<u32>,
    hasher: RandomState,
}

impl<T: Eq + Hash> Interner<T> {
    pub(crate) fn intern(&mut self, value: T) -> u32 {
        let hash = self.hasher.hash_one(&value);
        let values = &self.values;
        if let Some(id) = self.ids.find(hash, |id| values[*id as usize] == value) {
            return *id;
        }
        let id = u32::try_from(self.values.len()).expect("fewer than 4 billion distinct values");
        self.values.push(value);
        let (values, hasher) = (&self.values, &self.hasher);
        self.ids
            .insert_unique(hash, id, |id| hasher.hash_one(&values[*id as usize]));
        id
    }

    pub(crate) fn get<Q>(&self, value: &Q) -> Option<u32>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // `Borrow` promises that `Q` hashes as `T` does.
        let hash = self.hasher.hash_one(value);
        self.ids
            .find(hash, |id| self.values[*id as usize].borrow() == value)
            .copied()
    }
}

/// One instance, 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) tag_set: u32,
    pub(crate) image: u32,
    pub(crate) instance_type: u32,
    pub(crate) subnet: u32,
    pub(crate) sg_set: u32,
    pub(crate) launched_ms: u64,
    /// When a launched instance turns from pending to running.
    pub(crate) ready_ms: u64,
    /// A state set out of band (`stopped`, ...), or `None` for the launch lifecycle.
    pub(crate) forced_state: Option<InstanceState>,
}

/// An out-of-band change to one sim instance (what someone might do in a console).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimChange {
    /// ModifyInstanceAttribute instanceType.
    InstanceType(String),
    /// Swap the image (impossible in EC2, handy for drift tests).
    Image(String),
    /// Replace the security groups.
    SecurityGroups(Vec<String>),
    /// Move to another subnet (or none).
    Subnet(Option<String>),
    /// Force a state: `stopped`, `stopping`, `running`, ... (`terminated` terminates).
    State(InstanceState),
    /// Set a tag.
    SetTag {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Remove a tag.
    RemoveTag(String),
}

/// One entry of the sim's append-only log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    /// `count` instances with ids `first_id..first_id+count`.
    Launch {
        first_id: u64,
        count: u32,
        launched_ms: u64,
        ready_ms: u64,
        image: String,
        instance_type: String,
        /// Instance `k` goes to `subnets[(subnet_offset + k) % len]`; empty: none.
        subnets: Vec<String>,
        subnet_offset: u32,
        security_groups: Vec<String>,
        tags: BTreeMap<String, String>,
    },
    /// Instances gone.
    Terminate { ids: Vec<u64> },
    /// An out-of-band change.
    Modify { id: u64, change: SimChange },
}

/// The whole sim cloud.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) next_id: u64,
    pub(crate) strings: Interner<Text>,
    /// Sorted (key, value) string ids.
    pub(crate) tag_sets: Interner<Vec<(u32, u32)>>,
    /// Per tag set: the owner and launch-token string ids (`NONE` when absent).
    pub(crate) tag_set_keys: Vec<(u32, u32)>,
    /// Sorted string ids.
    pub(crate) sg_sets: Interner<Vec<u32>>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) index: HashMap<u64, usize>,
}

impl World {
    pub(crate) fn string(&mut self, s: &str) -> u32 {
        if let Some(id) = self.strings.get(s) {
            return id;
        }
        self.strings.intern(Text::from(s))
    }

    /// The id of an already interned string.
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.strings.get(s)
    }

    fn str_of(&self, id: u32) -> &str {
        &self.strings.values[id as usize]
    }

    fn text_of(&self, id: u32) -> Text {
        self.strings.values[id as usize].clone()
    }

    pub(crate) fn intern_tags(&mut self, tags: &BTreeMap<String, String>) -> u32 {
        let pairs: Vec<(u32, u32)> = tags
            .iter()
            .map(|(k, v)| (self.string(k), self.string(v)))
            .collect();
        self.intern_tag_pairs(pairs)
    }

    pub(crate) fn intern_tag_pairs(&mut self, mut pairs: Vec<(u32, u32)>) -> u32 {
        pairs.sort_by(|a, b| self.str_of(a.0).cmp(self.str_of(b.0)));
        let id = self.tag_sets.intern(pairs);
        if id as usize == self.tag_set_keys.len() {
            let owner = self.strings.get(tags::OWNER);
            let token = self.strings.get(tags::LAUNCH_TOKEN);
            let find = |key: Option<u32>, pairs: &[(u32, u32)]| {
                key.and_then(|k| pairs.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v))
                    .unwrap_or(NONE)
            };
            let pairs = &self.tag_sets.values[id as usize];
            self.tag_set_keys
                .push((find(owner, pairs), find(token, pairs)));
        }
        id
    }

    pub(crate) fn intern_sgs(&mut self, groups: &[String]) -> u32 {
        let mut ids: Vec<u32> = groups.iter().map(|g| self.string(g)).collect();
        ids.sort_by(|a, b| self.str_of(*a).cmp(self.str_of(*b)));
        ids.dedup();
        self.sg_sets.intern(ids)
    }

    pub(crate) fn push_slot(&mut self, slot: Slot) {
        self.next_id = self.next_id.max(slot.id + 1);
        if let Some(&at) = self.index.get(&slot.id) {
            self.slots[at] = slot;
        } else {
            self.index.insert(slot.id, self.slots.len());
            self.slots.push(slot);
        }
    }

    pub(crate) fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        let at = *self.index.get(&id)?;
        self.slots.get_mut(at)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.index.contains_key(&id)
    }

    fn remove(&mut self, id: u64) {
        if let Some(at) = self.index.remove(&id) {
            self.slots.swap_remove(at);
            if let Some(moved) = self.slots.get(at) {
                self.index.insert(moved.id, at);
            }
        }
    }

    /// Apply one log record.
    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Launch {
                first_id,
                count,
                launched_ms,
                ready_ms,
                image,
                instance_type,
                subnets,
                subnet_offset,
                security_groups,
                tags,
            } => {
                let tag_set = self.intern_tags(tags);
                let image = self.string(image);
                let instance_type = self.string(instance_type);
                let sg_set = self.intern_sgs(security_groups);
                let subnets: Vec<u32> = subnets.iter().map(|s| self.string(s)).collect();
                for k in 0..*count {
                    let subnet = if subnets.is_empty() {
                        NONE
                    } else {
                        subnets[(*subnet_offset as usize + k as usize) % subnets.len()]
                    };
                    self.push_slot(Slot {
                        id: first_id + u64::from(k),
                        tag_set,
                        image,
                        instance_type,
                        subnet,
                        sg_set,
                        launched_ms: *launched_ms,
                        ready_ms: *ready_ms,
                        forced_state: None,
                    });
                }
            }
            Record::Terminate { ids } => {
                for id in ids {
                    self.remove(*id);
                }
            }
            Record::Modify { id, change } => self.modify(*id, change),
        }
    }

    fn modify(&mut self, id: u64, change: &SimChange) {
        if !self.contains(id) {
            return;
        }
        if let SimChange::State(InstanceState::Terminated) = change {
            self.remove(id);
            return;
        }
        let new_value = match change {
            SimChange::InstanceType(t) | SimChange::Image(t) => self.string(t),
            SimChange::SecurityGroups(groups) => self.intern_sgs(groups),
            SimChange::Subnet(Some(s)) => self.string(s),
            SimChange::Subnet(None) => NONE,
            SimChange::SetTag { key, value } => {
                let (k, v) = (self.string(key), self.string(value));
                let old = self.slot_mut(id).map(|s| s.tag_set).unwrap_or_default();
                let mut pairs = self.tag_sets.values[old as usize].clone();
                pairs.retain(|(pk, _)| *pk != k);
                pairs.push((k, v));
                self.intern_tag_pairs(pairs)
            }
            SimChange::RemoveTag(key) => {
                let k = self.string(key);
                let old = self.slot_mut(id).map(|s| s.tag_set).unwrap_or_default();
                let mut pairs = self.tag_sets.values[old as usize].clone();
                pairs.retain(|(pk, _)| *pk != k);
                self.intern_tag_pairs(pairs)
            }
            SimChange::State(_) => NONE,
        };
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        match change {
            SimChange::InstanceType(_) => slot.instance_type = new_value,
            SimChange::Image(_) => slot.image = new_value,
            SimChange::SecurityGroups(_) => slot.sg_set = new_value,
            SimChange::Subnet(_) => slot.subnet = new_value,
            SimChange::SetTag { .. } | SimChange::RemoveTag(_) => slot.tag_set = new_value,
            SimChange::State(state) => slot.forced_state = Some(*state),
        }
    }

    /// Slots whose owner tag is `owner` (and, if given, whose launch token is `token`).
    pub(crate) fn select(&self, owner: &str, token: Option<&str>) -> Vec<&Slot> {
        let Some(owner) = self.strings.get(owner) else {
            return Vec::new();
        };
        let token = match token {
            None => None,
            Some(t) => match self.strings.get(t) {
                Some(t) => Some(t),
                None => return Vec::new(),
            },
        };
        self.slots
            .iter()
            .filter(|s| {
                let (o, t) = self.tag_set_keys[s.tag_set as usize];
                o == owner && token.is_none_or(|want| want == t)
            })
            .collect()
    }

    /// A slot's state at `now_ms`.
    pub(crate) fn state(slot: &Slot, now_ms: u64) -> InstanceState {
        match slot.forced_state {
            Some(state) => state,
            None if now_ms < slot.ready_ms => InstanceState::Pending,
            None => InstanceState::Running,
        }
    }

    /// The provider-neutral view of a slot. `cache` holds the tag and security-group
    /// sets already built, so instances that share a set share one allocation.
    pub(crate) fn view(
        &self,
        slot: &Slot,
        now_ms: u64,
        unhealthy_images: &[u32],
        cache: &mut ViewCache,
    ) -> Instance {
        let state = Self::state(slot, now_ms);
        let health = match state {
            InstanceState::Running if unhealthy_images.contains(&slot.image) => {
                InstanceHealth::Unhealthy
            }
            InstanceState::Running => InstanceHealth::Healthy,
            InstanceState::Pending => InstanceHealth::Unknown,
            _ => InstanceHealth::Unhealthy,
        };
        let tags = cache
            .tags
            .entry(slot.tag_set)
            .or_insert_with(|| {
                self.tag_sets.values[slot.tag_set as usize]
                    .iter()
                    .map(|(k, v)| (self.text_of(*k), self.text_of(*v)))
                    .collect()
            })
            .clone();
        let security_group_ids = cache
            .sg_sets
            .entry(slot.sg_set)
            .or_insert_with(|| {
                self.sg_sets.values[slot.sg_set as usize]
                    .iter()
                    .map(|g| self.text_of(*g))
                    .collect()
            })
            .clone();
        Instance {
            id: format_id(slot.id).into(),
            state,
            health,
            image: self.text_of(slot.image),
            instance_type: self.text_of(slot.instance_type),
            subnet_id: (slot.subnet != NONE).then(|| self.text_of(slot.subnet)),
            security_group_ids,
            launch_time: Some(UNIX_EPOCH + Duration::from_millis(slot.launched_ms)),
            private_ip: Some(private_ip(slot.id).into()),
            tags,
        }
    }
}

/// Tag and security-group sets already built by [`World::view`] during one listing.
#[derive(Debug, Default)]
pub(crate) struct ViewCache {
    tags: HashMap<u32, Tags>,
    sg_sets: HashMap<u32, Arc<[Text]>>,
}

/// `i-` and 17 hex digits, like EC2. (Hand-rolled: inventory formats one per instance.)
pub(crate) fn format_id(id: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(19);
    out.push_str("i-");
    for shift in (0..17).rev() {
        // The 17th digit (bits 64..68) is always 0 for a u64.
        let digit = if shift == 16 {
            0
        } else {
            (id >> (shift * 4)) & 0xf
        };
        out.push(char::from(HEX[digit as usize]));
    }
    out
}

/// The numeric id behind an `i-…` id, if it is one of ours.
pub(crate) fn parse_id(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("i-")?;
    if hex.len() != 17 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// A stable private address in 10.0.0.0/8 derived from the id.
fn private_ip(id: u64) -> String {
    let n = id & 0x00ff_ffff;
    let mut out = String::with_capacity(15);
    out.push_str("10");
    for octet in [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff] {
        out.push('.');
        if octet >= 100 {
            out.push(char::from(b'0' + (octet / 100) as u8));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + (octet / 10 % 10) as u8));
        }
        out.push(char::from(b'0' + (octet % 10) as u8));
    }
    out
}

/// Milliseconds since the epoch.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(first_id: u64, count: u32, owner: &str, token: &str) -> Record {
        Record::Launch {
            first_id,
            count,
            launched_ms: 1_000,
            ready_ms: 2_000,
            image: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            subnet_offset: 1,
            security_groups: vec!["sg-2".into(), "sg-1".into()],
            tags: BTreeMap::from([
                (tags::OWNER.to_string(), owner.to_string()),
                (tags::LAUNCH_TOKEN.to_string(), token.to_string()),
            ]),
        }
    }

    #[test]
    fn launch_select_modify_terminate() {
        let mut world = World::default();
        world.apply(&launch(1, 3, "me", "t1"));
        world.apply(&launch(4, 2, "other", "t1"));
        assert_eq!(world.select("me", None).len(), 3);
        assert_eq!(world.select("me", Some("t1")).len(), 3);
        assert_eq!(world.select("me", Some("t2")).len(), 0);
        assert_eq!(world.select("nobody", None).len(), 0);

        let mut cache = ViewCache::default();
        let view = world.view(world.select("me", None)[0], 1_500, &[], &mut cache);
        assert_eq!(view.id, "i-00000000000000001");
        assert_eq!(view.state, InstanceState::Pending);
        assert_eq!(view.subnet_id.as_deref(), Some("subnet-b"));
        assert_eq!(&*view.security_group_ids, ["sg-1", "sg-2"]);

        world.apply(&Record::Modify {
            id: 2,
            change: SimChange::InstanceType("m5.large".into()),
        });
        world.apply(&Record::Modify {
            id: 2,
            change: SimChange::SetTag {
                key: "env".into(),
                value: "x".into(),
            },
        });
        world.apply(&Record::Terminate { ids: vec![1, 99] });
        let mine = world.select("me", None);
        assert_eq!(mine.len(), 2);
        let two = mine
            .iter()
            .find(|s| s.id == 2)
            .expect("instance 2 is alive");
        let view = world.view(two, 5_000, &[], &mut cache);
        assert_eq!(view.instance_type, "m5.large");
        assert_eq!(view.state, InstanceState::Running);
        assert_eq!(view.tag("env"), Some("x"));
        assert_eq!(view.owner(), Some("me"), "owner survives a tag change");
        assert_eq!(world.next_id, 6);
    }

    #[test]
    fn ids_and_addresses_format_like_ec2() {
        assert_eq!(format_id(0xabc), "i-00000000000000abc");
        assert_eq!(format_id(u64::MAX), "i-0ffffffffffffffff");
        assert_eq!(private_ip(0x01_0a_ff), "10.1.10.255");
        assert_eq!(private_ip(7), "10.0.0.7");
        assert_eq!(private_ip(0x64_00_09), "10.100.0.9");
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_id(&format_id(0xabc)), Some(0xabc));
        assert_eq!(parse_id("i-123"), None);
        assert_eq!(parse_id("vol-00000000000000001"), None);
    }
}
