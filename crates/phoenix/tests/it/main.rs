//! The integration tests of `phoenix`, one binary whose modules are the test files
//! (each test binary links the whole dependency tree, so one per crate keeps builds short).

mod cli;
mod daemon_chaos_moto;
mod daemon_git_moto;
mod daemon_observe;
mod daemon_prune;
mod daemon_retry;
mod daemon_sim;
mod daemon_stuck_source;
mod daemon_windows;
mod dashboard_group;
mod monitoring;
mod plan_desired;
mod plan_moto;
mod support;
mod tidy;
mod trust_e2e;
