//! `phoenix validate PATH...`: validate desired-state files or a daemon config.
//!
//! A file is taken as a daemon config when its top level has `owner` or `providers`
//! and no `apiVersion`; otherwise it is a desired-state document. Group names must be
//! unique across every file given, exactly as within one revision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use phoenix_core::config::Config;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::files;

/// Arguments of `phoenix validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or folders (searched recursively for *.yaml and *.yml).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// The top-level keys that tell a config from a desired-state document.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "apiVersion")]
    api_version: Option<IgnoredAny>,
    owner: Option<IgnoredAny>,
    providers: Option<IgnoredAny>,
}

fn looks_like_config(text: &str) -> bool {
    match phoenix_core::yaml::from_str::<Probe>(text) {
        Ok(probe) => {
            probe.api_version.is_none() && (probe.owner.is_some() || probe.providers.is_some())
        }
        Err(_) => false,
    }
}

/// Validate everything; print each problem on its own line; exit 1 if any.
pub fn run(args: &Args) -> Result<ExitCode> {
    let paths = files::expand(&args.paths)?;
    if paths.is_empty() {
        anyhow::bail!("no *.yaml or *.yml files found in the given paths");
    }
    let mut problems = 0usize;
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut groups = 0usize;
    let mut configs = 0usize;
    for path in &paths {
        let shown = path.display().to_string();
        let text = match files::read_yaml(path) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("{err:#}");
                problems += 1;
                continue;
            }
        };
        if looks_like_config(&text) {
            configs += 1;
            problems += validate_config(&shown, &text);
            continue;
        }
        groups += 1;
        match phoenix_core::parse_group(&text) {
            Ok(parsed) => {
                let name = parsed.group.name().to_string();
                if let Some(first) = names.get(&name) {
                    eprintln!(
                        "{shown}: metadata.name `{name}` is already used by {}",
                        first.display()
                    );
                    problems += 1;
                } else {
                    names.insert(name, path.clone());
                }
            }
            Err(err) => {
                eprintln!("{}", err.in_file(&shown));
                problems += 1;
            }
        }
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) in {} file(s)", paths.len());
        return Ok(ExitCode::FAILURE);
    }
    println!("ok: {groups} group file(s), {configs} config file(s)");
    Ok(ExitCode::SUCCESS)
}

fn validate_config(shown: &str, text: &str) -> usize {
    match Config::parse(text) {
        Ok(_) => 0,
        Err(errors) => {
            for err in &errors {
                print_config_error(Path::new(shown), err);
            }
            errors.len()
        }
    }
}

fn print_config_error(path: &Path, err: &phoenix_core::config::ConfigError) {
    match (err.line, err.column) {
        (Some(line), Some(col)) => eprintln!("{}:{line}:{col}: {}", path.display(), err.message),
        _ => eprintln!("{}: {}", path.display(), err.message),
    }
}
