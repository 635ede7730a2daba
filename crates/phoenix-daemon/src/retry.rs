//! Explicit retry of a failed generation (design sections 6 and 15): after a rollback the
//! failed hash is not planned again at the same commit; `POST /api/v1/groups/{name}/retry`
//! (and `phoenix retry GROUP`) forgets that failure for the group's *current* hash, so the
//! next pass plans it again. The loop calls [`retry`] and then runs a pass.

use phoenix_api::{RetryAnswer, RetryError, RetryReply};
use phoenix_source::Revision;
use phoenix_store::Store;

/// Lift the failed-generation block of `group`'s desired hash in `revision` (the
/// revision in force). A group that is not in it is [`RetryError::GroupNotFound`]; a
/// hash without a failure record answers `cleared: false` and changes nothing.
pub fn retry(store: &mut Store, revision: Option<&Revision>, group: &str) -> RetryReply {
    let not_found = || RetryError::GroupNotFound {
        group: group.to_owned(),
    };
    let desired = revision
        .and_then(|r| r.groups.iter().find(|(name, _)| name.as_str() == group))
        .map(|(_, desired)| desired)
        .ok_or_else(not_found)?;
    let cleared = store
        .clear_failed_hash(desired.name(), &desired.hash)
        .map_err(|err| RetryError::Store {
            group: group.to_owned(),
            reason: crate::error_chain(&err),
        })?;
    tracing::info!(group, hash = %desired.hash, cleared, "retry requested: the failed-generation block is lifted");
    Ok(RetryAnswer {
        group: group.to_owned(),
        spec_hash: desired.hash.to_string(),
        cleared,
    })
}
