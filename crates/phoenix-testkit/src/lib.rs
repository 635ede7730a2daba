//! Test fixtures for Phoenix (a dev-dependency only): free loopback ports, child
//! services started on them and stopped by PID, and builders for test data.
//!
//! Fixtures fail loudly: a service that cannot start panics with the reason, never
//! skips the test.

pub mod alertmanager;
pub mod chromium;
pub mod fuzz;
pub mod git;
pub mod moto;
pub mod net;
pub mod prometheus;
pub mod scale_ec2;
pub mod signing;
