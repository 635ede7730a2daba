//! `phoenix hash FILE...`: print each desired-state file's spec hash, like sha256sum.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::files;

/// Arguments of `phoenix hash`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print a JSON array of {path, name, hash} instead of `<hash>  <path>` lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Entry {
    path: String,
    name: String,
    hash: String,
}

/// Hash every file; exit 1 if any could not be hashed (the others are still printed).
pub fn run(args: &Args) -> Result<ExitCode> {
    let mut entries = Vec::new();
    let mut failed = false;
    for path in &args.files {
        let shown = path.display().to_string();
        let parsed = files::read_yaml(path).and_then(|text| {
            phoenix_core::parse_group(&text).map_err(|e| anyhow::anyhow!("{}", e.in_file(&shown)))
        });
        match parsed {
            Ok(parsed) => entries.push(Entry {
                path: shown,
                name: parsed.group.name().to_string(),
                hash: parsed.hash.to_string(),
            }),
            Err(err) => {
                eprintln!("{err:#}");
                failed = true;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        for entry in &entries {
            println!("{}  {}", entry.hash, entry.path);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
