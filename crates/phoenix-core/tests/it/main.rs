//! The integration tests of `phoenix-core`, one binary whose modules are the test files
//! (each test binary links the whole dependency tree, so one per crate keeps builds short).

mod config_schema;
mod drift_classify;
mod fuzz_bodies;
mod mass_removal;
mod planner_cases;
mod planner_markdown;
mod planner_policy;
mod planner_props;
mod planner_support;
mod spec_fast_path;
mod spec_gen;
mod spec_hash;
mod spec_hostile;
mod spec_validation;
mod windows;
