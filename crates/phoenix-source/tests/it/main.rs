//! The integration tests of `phoenix-source`, one binary whose modules are the test files
//! (each test binary links the whole dependency tree, so one per crate keeps builds short).

mod git_cache;
mod hostile_source;
mod signatures;
mod sources;
