//! Fuzz target `webhook_github`: the push webhook handler for Github (phoenix_api::fuzz::webhook).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| phoenix_api::fuzz::webhook(phoenix_api::Forge::Github, data));
