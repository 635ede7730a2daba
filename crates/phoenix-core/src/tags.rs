//! The tags Phoenix writes on every instance it launches (design section 4).
//!
//! Tags are set at creation time, never by a later call. Inventory finds our instances
//! by [`OWNER`], and crash recovery finds what a half-done launch created by
//! [`LAUNCH_TOKEN`].

/// The daemon's `owner`: two Phoenix installs never touch each other's instances.
pub const OWNER: &str = "phoenix:owner";
/// `metadata.name` of the group the instance belongs to.
pub const GROUP: &str = "phoenix:group";
/// The spec hash of the generation the instance was launched from.
pub const SPEC_HASH: &str = "phoenix:spec-hash";
/// The Git commit (or folder content hash) the spec came from.
pub const COMMIT: &str = "phoenix:commit";
/// The plan id that launched the instance.
pub const PLAN: &str = "phoenix:plan";
/// Deterministic token of the launch step, for crash recovery.
pub const LAUNCH_TOKEN: &str = "phoenix:launch-token";

/// Tag keys reserved for Phoenix; user tags in a template may not use this prefix.
pub const RESERVED_PREFIX: &str = "phoenix:";
/// Tag keys reserved by AWS; user tags may not use this prefix either.
pub const AWS_RESERVED_PREFIX: &str = "aws:";

/// Every tag Phoenix writes, in a fixed order.
pub const ALL: [&str; 6] = [OWNER, GROUP, SPEC_HASH, COMMIT, PLAN, LAUNCH_TOKEN];
