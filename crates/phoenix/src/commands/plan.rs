//! `phoenix plan`: a one-shot, terraform-style preview of what the daemon would do.
//!
//! Loads the newest revision from the configured source, or with `--desired DIR` a local
//! folder of group files (a pull-request checkout) through the same loader, and every
//! provider's inventory, runs the pure planner and prints the plan: text, the versioned
//! JSON document (`--format json`, or `--json`), or a pull-request comment
//! (`--format markdown`). A rejected revision (its problems named `path:line:col`), a
//! group naming an unknown provider, or an unreachable provider (incomplete inventory) is
//! an error, never "everything is missing". With `policy.images`, a group naming an image
//! that breaks the policy (or cannot be checked) is an error too: the plan is printed,
//! then the command exits 1 naming the group, its file, the image and the rule. Exit
//! codes: 0 success, 1 error; with `--detailed-exitcode` 0 = no changes, 1 = error,
//! 2 = changes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use phoenix_cloud::{BuildOptions, build_providers};
use phoenix_core::config::{Config, DirSourceConfig, SourceConfig};
use phoenix_core::markdown::render_markdown;
use phoenix_core::model::Inventory;
use phoenix_core::plan::{PlanInput, PlanMemory, plan};
use phoenix_core::policy::ImageVerdicts;
use phoenix_core::render::{RenderOptions, render_text};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::traffic::TrafficView;
use phoenix_source::{PollOutcome, Problem, Rejection, Revision, Source};

use crate::config_file;

/// Arguments of `phoenix plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon config file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Plan this local folder of group files (for example a pull-request checkout)
    /// instead of the configured source's newest revision, against live inventory.
    #[arg(long, value_name = "DIR")]
    desired: Option<PathBuf>,
    /// Output format: `text`, the versioned JSON plan document (`json`), or a
    /// pull-request comment (`markdown`).
    #[arg(long, value_enum, default_value_t = Format::Text, conflicts_with = "json")]
    format: Format,
    /// Print the versioned JSON plan document: the same as `--format json`.
    #[arg(long)]
    json: bool,
    /// Exit 2 when there are changes, 0 when there are none (1 is always an error).
    #[arg(long)]
    detailed_exitcode: bool,
    /// Only show this group.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Also list groups that are in sync (text output).
    #[arg(long)]
    all: bool,
}

/// What `phoenix plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text (coloured on a terminal unless `NO_COLOR` is set).
    Text,
    /// The versioned plan document (docs/plan-format.md).
    Json,
    /// A markdown comment for a pull request: summary table, then details per group.
    Markdown,
}

/// Build the plan and print it.
pub fn run(args: &Args) -> Result<ExitCode> {
    let config = config_file::load(&args.config)?;
    let (revision, root) = match &args.desired {
        Some(dir) => (load_folder(dir)?, Some(dir.as_path())),
        None => (load_revision(&config)?, None),
    };
    let groups: Vec<ParsedGroup> = revision
        .groups
        .values()
        .map(|desired| ParsedGroup {
            group: std::sync::Arc::clone(&desired.group),
            hash: desired.hash,
        })
        .collect();
    for desired in revision.groups.values() {
        let provider = desired.group.spec.provider.as_str();
        if config.provider(provider).is_none() {
            bail!(
                "{}: spec.provider `{provider}` is not a provider in {} (known: {})",
                shown_path(root, &desired.path),
                args.config.display(),
                config
                    .providers
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if let Some(name) = &args.group
        && !revision.groups.keys().any(|g| g.as_str() == name)
    {
        bail!("group `{name}` is not in revision {}", revision.id);
    }

    let now = SystemTime::now();
    let (inventories, images, traffic) = collect_inventories(&config, &revision, now)?;
    let outcome = plan(&PlanInput {
        revision: revision.id.as_str(),
        owner: &config.owner,
        groups: &groups,
        inventories: &inventories,
        config: &config.reconcile,
        memory: &PlanMemory::default(),
        failed: &[],
        images: &images,
        traffic: &traffic,
        now,
    })
    .context("planning failed")?;
    let mut document = outcome.document;
    if let Some(name) = &args.group {
        document.retain_group(name);
    }

    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&document).context("serialize the plan")?
        ),
        Format::Markdown => print!("{}", render_markdown(&document)),
        Format::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!(
                "{}",
                render_text(
                    &document,
                    RenderOptions {
                        colour,
                        show_in_sync: args.all
                    }
                )
            );
        }
    }
    if let Some(refused) = policy_refusals(&revision, &images) {
        bail!("{refused}");
    }
    Ok(match (args.detailed_exitcode, document.changes) {
        (true, true) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

/// The newest revision, or an error naming why it cannot be planned.
fn load_revision(config: &Config) -> Result<Revision> {
    // A separate cache folder from the daemon's, so a running daemon and a one-shot
    // plan never work in the same clone at the same time.
    let cache = config.state.path.join("cli");
    let mut source =
        Source::open(&config.source, &cache).context("cannot open the desired-state source")?;
    match source
        .poll()
        .context("cannot read the desired-state source")?
    {
        PollOutcome::Accepted { revision, .. } => Ok((*revision).clone()),
        PollOutcome::Rejected { rejection, .. } => Err(rejected(
            &format!("the newest revision {} is rejected:", rejection.revision),
            &rejection,
            None,
        )),
        PollOutcome::Unchanged => match source.current() {
            Some(revision) => Ok((*revision).clone()),
            None => bail!("the source returned no revision"),
        },
    }
}

/// A local folder of group files as one revision, through the same loader (and so the
/// same validation) as the daemon's folder source; a rejection names each problem as
/// `DIR/file:line:col`.
fn load_folder(dir: &Path) -> Result<Revision> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{}: --desired must name a folder", dir.display());
    }
    let config = SourceConfig::Dir(DirSourceConfig {
        path: dir.to_path_buf(),
        watch: false,
        interval: std::time::Duration::from_secs(30),
    });
    // A folder source keeps nothing on disk, so no state folder is needed.
    let mut source =
        Source::open(&config, dir).with_context(|| format!("cannot open {}", dir.display()))?;
    match source
        .poll()
        .with_context(|| format!("cannot read {}", dir.display()))?
    {
        PollOutcome::Accepted { revision, .. } => Ok((*revision).clone()),
        PollOutcome::Rejected { rejection, .. } => Err(rejected(
            &format!("the desired state in {} is rejected:", dir.display()),
            &rejection,
            Some(dir),
        )),
        PollOutcome::Unchanged => bail!("{}: the folder returned no revision", dir.display()),
    }
}

/// The error for a rejected revision: one line per problem, paths under `root` when the
/// revision is a local folder.
fn rejected(headline: &str, rejection: &Rejection, root: Option<&Path>) -> anyhow::Error {
    let mut message = headline.to_owned();
    for problem in &rejection.problems {
        let problem = Problem {
            path: problem.path.as_deref().map(|p| shown_path(root, p)),
            ..problem.clone()
        };
        message.push_str(&format!("\n  {problem}"));
    }
    anyhow!(message)
}

/// A revision path as the user knows it: under the `--desired` folder when there is one.
fn shown_path(root: Option<&Path>, path: &str) -> String {
    match root {
        Some(root) => root.join(path).display().to_string(),
        None => path.to_owned(),
    }
}

/// Every group whose image `policy.images` refuses (or could not check), one line each
/// naming the group, its file, the image and the rule; `None` when there is none.
fn policy_refusals(revision: &Revision, images: &ImageVerdicts) -> Option<String> {
    let lines: Vec<String> = revision
        .groups
        .values()
        .filter_map(|desired| {
            let spec = &desired.group.spec;
            let image = spec.template.image.as_str();
            let why = match images.check(spec.provider.as_str(), image)? {
                Ok(violation) => format!(
                    "breaks policy.images rule `{}`: {violation}",
                    violation.rule()
                ),
                Err(reason) => format!("could not be checked against policy.images: {reason}"),
            };
            Some(format!(
                "group `{}` ({}): image {image} {why}",
                desired.name(),
                desired.path
            ))
        })
        .collect();
    (!lines.is_empty()).then(|| {
        format!(
            "{} group(s) name an image that may not be launched:\n  {}",
            lines.len(),
            lines.join("\n  ")
        )
    })
}

/// Every provider's inventory (an incomplete one is an error naming the provider), and
/// the `policy.images` verdicts of the images the revision names.
fn collect_inventories(
    config: &Config,
    revision: &Revision,
    now: SystemTime,
) -> Result<(Vec<Inventory>, ImageVerdicts, TrafficView)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let providers = build_providers(&config.providers, &config.state.path, &BuildOptions::default())
            .await
            .context("cannot set up the providers")?;
        let mut inventories = Vec::with_capacity(providers.len());
        for (name, provider) in &providers {
            let inventory = provider.inventory(&config.owner).await;
            if !inventory.complete {
                bail!(
                    "provider `{name}` ({}) is unreachable or answered only in part, so nothing can be planned safely: {}",
                    provider.type_name(),
                    inventory.error.as_deref().unwrap_or("unknown error")
                );
            }
            inventories.push(inventory);
        }
        let images = phoenix_daemon::policy::image_verdicts(
            config.policy.images.as_deref(),
            Some(revision),
            &providers,
            now,
        )
        .await;
        let groups = revision.groups.values().map(|d| d.group.as_ref());
        let traffic = phoenix_daemon::traffic::target_health(groups, &providers).await;
        if let Some(failed) = traffic.iter().find(|read| !read.complete) {
            bail!(
                "target group {} of provider `{}` could not be read, so nothing can be planned safely: {}",
                failed.target_group,
                failed.provider,
                failed.error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok((inventories, images, traffic))
    })
}
