//! Issue 17: the bodies of the fuzz targets of this crate (webhook_github,
//! webhook_gitlab, webhook_gitea) run as ordinary tests on stable, over the committed
//! corpus, mutations of it and random bytes (`phoenix_testkit::fuzz_body_tests!`).
//! `scripts/fuzz.sh` runs the same functions under libFuzzer; any crash it finds is
//! added to the corpus, and so here.

phoenix_testkit::fuzz_body_tests!(webhook_github, super::github);
phoenix_testkit::fuzz_body_tests!(webhook_gitlab, super::gitlab);
phoenix_testkit::fuzz_body_tests!(webhook_gitea, super::gitea);

fn github(data: &[u8]) {
    phoenix_api::fuzz::webhook(phoenix_api::Forge::Github, data);
}

fn gitlab(data: &[u8]) {
    phoenix_api::fuzz::webhook(phoenix_api::Forge::Gitlab, data);
}

fn gitea(data: &[u8]) {
    phoenix_api::fuzz::webhook(phoenix_api::Forge::Gitea, data);
}
