//! Issue 17: the bodies of the fuzz targets of this crate (spec, config) run as ordinary
//! tests on stable, over the committed corpus, mutations of it and random bytes
//! (`phoenix_testkit::fuzz_body_tests!`). `scripts/fuzz.sh` runs the same functions under
//! libFuzzer; any crash it finds is added to the corpus, and so here.

phoenix_testkit::fuzz_body_tests!(spec, phoenix_core::fuzz::spec);
phoenix_testkit::fuzz_body_tests!(config, phoenix_core::fuzz::config);
