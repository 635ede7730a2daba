//! The deterministic plan id ([`plan_id`]): part of the contract (launch tokens derive
//! from it), so its input and encoding never change.

use sha2::{Digest, Sha256};

use super::Step;
use crate::hash::SpecHash;

/// The deterministic plan id: `plan-` and 16 hex digits of a SHA-256 over the revision,
/// provider, group, target hash and the steps. The same observation at the same revision
/// yields the same id; any change of the steps yields a new one, so launch tokens
/// derived from it never collide across plans.
pub fn plan_id(
    revision: &str,
    provider: &str,
    group: &str,
    target: Option<&SpecHash>,
    steps: &[Step],
) -> String {
    let mut h = Sha256::new();
    for part in [revision, provider, group] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    match target {
        Some(t) => h.update(t.digest()),
        None => h.update([0u8; 32]),
    }
    for step in steps {
        match step {
            Step::Launch { count } => {
                h.update(b"L");
                h.update(count.to_le_bytes());
            }
            Step::WaitHealthy {
                instance_ids,
                grace,
                deadline,
            } => {
                h.update(b"W");
                h.update(grace.as_millis().to_le_bytes());
                h.update(deadline.as_millis().to_le_bytes());
                for id in instance_ids {
                    h.update(id.as_bytes());
                    h.update([0]);
                }
            }
            Step::Bake { duration } => {
                h.update(b"B");
                h.update(duration.as_millis().to_le_bytes());
            }
            Step::Terminate { instance_ids } => {
                h.update(b"T");
                for id in instance_ids {
                    h.update(id.as_bytes());
                    h.update([0]);
                }
            }
            Step::Register {
                instance_ids,
                target_groups,
            } => {
                h.update(b"R");
                digest_lists(&mut h, instance_ids, target_groups);
            }
            Step::WaitInService {
                instance_ids,
                target_groups,
                deadline,
            } => {
                h.update(b"S");
                h.update(deadline.as_millis().to_le_bytes());
                digest_lists(&mut h, instance_ids, target_groups);
            }
            Step::Deregister {
                instance_ids,
                target_groups,
            } => {
                h.update(b"D");
                digest_lists(&mut h, instance_ids, target_groups);
            }
            Step::WaitDrained {
                instance_ids,
                target_groups,
                drain,
            } => {
                h.update(b"N");
                h.update(drain.map_or(u128::MAX, |d| d.as_millis()).to_le_bytes());
                digest_lists(&mut h, instance_ids, target_groups);
            }
        }
        h.update([0xff]);
    }
    let digest = h.finalize();
    format!("plan-{}", hex::encode(&digest[..8]))
}

/// Two lists of strings, each item ended by a 0 byte and each list by a 1 byte.
fn digest_lists(h: &mut Sha256, ids: &[String], target_groups: &[String]) {
    for list in [ids, target_groups] {
        for item in list {
            h.update(item.as_bytes());
            h.update([0]);
        }
        h.update([1]);
    }
}
