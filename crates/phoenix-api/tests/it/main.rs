//! The integration tests of `phoenix-api`, one binary whose modules are the test files
//! (each test binary links the whole dependency tree, so one per crate keeps builds short).

mod api;
mod dashboard_page;
mod fuzz_bodies;
mod monitoring;
mod server_limits;
mod windows_override;
