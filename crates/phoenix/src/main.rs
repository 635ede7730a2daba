//! The `phoenix` binary: the command-line interface over the Phoenix crates.
//!
//! `main` parses arguments, runs one command and turns its outcome into an exit code.
//! Errors are printed once, with their whole chain (`{:#}`), on standard error.

mod commands;
mod config_file;
mod files;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc instead of glibc malloc: with a fleet's inventory replaced every pass across
/// tokio's worker threads, glibc's per-thread arenas kept freed memory and peak RSS grew
/// to several times the live heap (docs/benchmarks.md, reconcile at 100k groups).
/// The `jemalloc` feature (on by default) selects it; heap profilers need it off.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Phoenix: a GitOps reconciliation daemon for immutable infrastructure.
///
/// Git holds the desired state of a fleet, one YAML file per instance group; Phoenix
/// replaces whatever drifts from it, never repairs.
#[derive(Debug, Parser)]
#[command(name = "phoenix", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate desired-state files or a daemon config; exit 0 when all are valid, 1 otherwise.
    ///
    /// Folders are searched recursively for *.yaml and *.yml. Every problem is printed on
    /// its own line as `path:line:col: message`. Group names must be unique across all
    /// files given, as in one revision.
    Validate(commands::validate::Args),
    /// Print the spec hash of each desired-state file, like sha256sum.
    Hash(commands::hash::Args),
    /// Preview what the daemon would replace, like `terraform plan`.
    ///
    /// Reads the newest revision (or, with --desired DIR, a local folder of group files
    /// such as a pull-request checkout) and every provider's inventory once and prints
    /// the plan as text, JSON or a markdown pull-request comment. Exit codes: 0 success,
    /// 1 error; with --detailed-exitcode 0 = no changes, 1 = error, 2 = changes.
    Plan(commands::plan::Args),
    /// Run the daemon: reconcile continuously and serve the HTTP API.
    ///
    /// Exit 64 on an invalid config, listing every problem. SIGTERM/SIGINT drain
    /// gracefully; SIGHUP or a change to the config file reloads it.
    Run(commands::run::Args),
    /// Ask a running daemon for its status.
    Status(commands::status::Args),
    /// Ask a running daemon to try a group's failed generation again.
    ///
    /// After a rollback the failed hash is not planned again until a new commit; this
    /// lifts that block for the group's current hash (POST /api/v1/groups/{name}/retry,
    /// with the token from $PHOENIX_API_TOKEN or --token-env). Exit 0 accepted, 1 error.
    Retry(commands::retry::Args),
    /// Act on a running daemon's change windows.
    ///
    /// `phoenix windows override --until TIME --reason TEXT` lifts every change window
    /// until TIME (RFC 3339, or a duration such as 2h) through POST
    /// /api/v1/windows/override, with the token from $PHOENIX_API_TOKEN or --token-env;
    /// it is recorded and alerted (window_override). Exit 0 recorded, 1 error.
    Windows(commands::windows::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Validate(args) => commands::validate::run(&args),
        Command::Hash(args) => commands::hash::run(&args),
        Command::Plan(args) => commands::plan::run(&args),
        Command::Run(args) => commands::run::run(&args),
        Command::Status(args) => commands::status::run(&args),
        Command::Retry(args) => commands::retry::run(&args),
        Command::Windows(args) => commands::windows::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("phoenix: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
