//! Cloud providers for Phoenix: the `Provider` trait, AWS EC2 and the built-in sim cloud.
