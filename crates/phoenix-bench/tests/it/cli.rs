//! phoenix-bench's command line. Besides checking usage errors, this integration test
//! makes `cargo test` build the `phoenix-bench` executable, which `scripts/bench.sh small`
//! (run by CI after the tests) uses without compiling anything again.

use std::process::Command;

#[test]
fn usage_errors_exit_64() {
    let bin = env!("CARGO_BIN_EXE_phoenix-bench");
    let none = Command::new(bin).output().expect("run phoenix-bench");
    assert_eq!(none.status.code(), Some(64));
    let no_phoenix = Command::new(bin)
        .args(["reconcile", "--groups", "10"])
        .output()
        .expect("run phoenix-bench");
    assert_eq!(no_phoenix.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&no_phoenix.stderr).contains("--phoenix"));
}
