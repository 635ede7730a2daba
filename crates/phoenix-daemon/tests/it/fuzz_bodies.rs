//! Issue 17: the body of the fuzz target of this crate (plan_document) runs as ordinary
//! tests on stable, over the committed corpus, mutations of it and random bytes
//! (`phoenix_testkit::fuzz_body_tests!`). `scripts/fuzz.sh` runs the same function under
//! libFuzzer; any crash it finds is added to the corpus, and so here.

phoenix_testkit::fuzz_body_tests!(plan_document, phoenix_daemon::fuzz::plan_document);
