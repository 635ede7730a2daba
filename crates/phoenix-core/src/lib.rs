//! Phoenix's pure core: the desired-state spec and its canonical hash, the daemon
//! configuration schema, the shared inventory model, drift classification and planning.
//!
//! Architecture invariant: nothing in this crate performs IO or reads the clock. Callers
//! hand in text they have read and the `now` they observed; everything here is a pure
//! function of its arguments, which is what makes the planner testable with data alone.

pub mod backoff;
pub mod config;
pub mod drift;
pub mod duration;
pub mod error_chain;
pub mod fuzz;
pub mod hash;
pub mod markdown;
pub mod model;
pub mod plan;
pub mod policy;
pub mod redact;
pub mod render;
pub mod sorted_map;
pub mod spec;
pub mod tags;
pub mod text;
pub mod time;
pub mod traffic;
pub mod window;
pub mod yaml;

pub use error_chain::chain;
pub use hash::{SpecHash, spec_hash};
pub use spec::{GroupName, InstanceGroup, SpecError, Template, parse_group};
pub use text::Text;
