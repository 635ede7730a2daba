//! Loading the daemon config from disk: read, parse, validate (every problem at once),
//! and resolve relative paths against the config file's folder.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use phoenix_core::config::Config;

use crate::files;

/// Read and validate a config file. The error lists every problem, one per line, as
/// `path:line:col: message` or `path: message`.
pub fn load(path: &Path) -> Result<Config> {
    let text = files::read_yaml(path)?;
    let mut config = match Config::parse(&text) {
        Ok(config) => config,
        Err(problems) => {
            let mut report = format!(
                "invalid config {} ({} problem(s))",
                path.display(),
                problems.len()
            );
            for problem in &problems {
                match (problem.line, problem.column) {
                    (Some(l), Some(c)) => {
                        write!(report, "\n{}:{l}:{c}: {}", path.display(), problem.message)
                    }
                    _ => write!(report, "\n{}: {}", path.display(), problem.message),
                }
                .expect("writing to a String cannot fail");
            }
            bail!(report);
        }
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    config.resolve_paths(base);
    Ok(config)
}
