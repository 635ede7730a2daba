//! Fuzz target `webhook_gitlab`: the push webhook handler for Gitlab (phoenix_api::fuzz::webhook).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| phoenix_api::fuzz::webhook(phoenix_api::Forge::Gitlab, data));
