//! The integration tests of `phoenix-store`, one binary whose modules are the test files
//! (each test binary links the whole dependency tree, so one per crate keeps builds short).

mod private_files;
mod retention;
mod store;
mod window_overrides;
