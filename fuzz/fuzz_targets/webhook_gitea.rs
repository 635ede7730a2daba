//! Fuzz target `webhook_gitea`: the push webhook handler for Gitea (phoenix_api::fuzz::webhook).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| phoenix_api::fuzz::webhook(phoenix_api::Forge::Gitea, data));
