//! Inventory benchmarks (filled in below).
fn main() {}
