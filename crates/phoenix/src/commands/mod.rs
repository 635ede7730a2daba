//! One module per subcommand; each exposes `Args` (clap) and `run`.

pub mod hash;
pub mod plan;
pub mod retry;
pub mod run;
pub mod status;
pub mod validate;
pub mod windows;
