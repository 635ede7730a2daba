//! The integration tests of `phoenix-cloud`, one binary whose modules are the test files
//! (each test binary links the whole dependency tree, so one per crate keeps builds short).

mod contract;
mod images;
mod traffic;
