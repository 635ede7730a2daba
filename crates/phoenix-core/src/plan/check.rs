//! The planner's input check: [`check`] refuses an input that contradicts itself (a group
//! named twice, a provider inventoried twice, an instance listed twice) and hands back a
//! [`Checked`] that [`super::plan_checked`] cannot refuse.

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashSet};

use super::{PlanError, PlanInput};

/// A planner input that passed [`check`]: [`super::plan_checked`] cannot refuse it.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'i, 'a>(pub(super) &'i PlanInput<'a>);

/// Whether [`super::plan`] would accept `input`: no group named twice, no provider inventoried
/// twice, no instance listed twice by one provider. These are the only ways planning
/// fails, so a caller that checked first can release what it held from the previous
/// pass (its plan document) before planning with [`super::plan_checked`], knowing it gets a
/// new one, and without checking twice.
pub fn check<'i, 'a>(input: &'i PlanInput<'a>) -> Result<Checked<'i, 'a>, PlanError> {
    let names = || input.groups.iter().map(|g| g.group.name().as_str());
    if let Some(group) = first_repeat(names) {
        return Err(PlanError::DuplicateGroup {
            group: group.to_string(),
        });
    }
    let mut providers: FxHashSet<&str> = FxHashSet::default();
    for inv in input.inventories {
        if !providers.insert(inv.provider.as_str()) {
            return Err(PlanError::DuplicateInventory {
                provider: inv.provider.clone(),
            });
        }
        let ids = || inv.instances.iter().map(|i| i.id.as_str());
        if let Some(id) = first_repeat(ids) {
            return Err(PlanError::DuplicateInstance {
                provider: inv.provider.clone(),
                instance_id: id.to_string(),
            });
        }
    }
    Ok(Checked(input))
}

/// The first string that repeats an earlier one, in iteration order.
///
/// The daemon checks its input while it still holds the last plan document, which makes
/// this its memory peak: so this sorts 8-byte hashes (2.4 MB for 300,000 instance ids)
/// instead of building a set of the strings (13 MB with its growth), and only strings
/// whose hash repeats are compared, in a second pass.
fn first_repeat<'s, I>(items: impl Fn() -> I) -> Option<&'s str>
where
    I: Iterator<Item = &'s str>,
{
    let hash = |s: &str| FxBuildHasher.hash_one(s);
    let mut hashes: Vec<u64> = items().map(hash).collect();
    hashes.sort_unstable();
    let repeated: FxHashSet<u64> = hashes
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    drop(hashes);
    if repeated.is_empty() {
        return None;
    }
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    items()
        .filter(|s| repeated.contains(&hash(s)))
        .find(|s| !seen.insert(*s))
}
