//! The integration tests of `phoenix-daemon`, one binary whose modules are the test files
//! (each test binary links the whole dependency tree, so one per crate keeps builds short).

mod alerts_alertmanager;
mod alerts_outage;
mod alerts_support;
mod alerts_webhook;
mod daemon_loop;
mod daemon_window_override;
mod executor_chaos;
mod executor_chaos_traffic;
mod executor_fleet;
mod executor_moto;
mod executor_moto_traffic;
mod executor_prune;
mod executor_recovery;
mod executor_rollout;
mod executor_support;
mod executor_traffic;
mod executor_windows;
mod fuzz_bodies;
