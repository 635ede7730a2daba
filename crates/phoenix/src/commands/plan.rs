//! `phoenix plan`: a one-shot, terraform-style preview of what the daemon would do.
//!
//! Loads the newest revision from the configured source and every provider's inventory,
//! runs the pure planner and prints the plan (text, or the versioned JSON document with
//! `--json`). A rejected newest revision, a group naming an unknown provider, or an
//! unreachable provider (incomplete inventory) is an error, never "everything is
//! missing". With `policy.images`, a group naming an image that breaks the policy (or
//! cannot be checked) is an error too: the plan is printed, then the command exits 1
//! naming the group, its file, the image and the rule. Exit codes: 0 success, 1 error;
//! with `--detailed-exitcode` 0 = no changes, 1 = error, 2 = changes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use phoenix_cloud::{BuildOptions, build_providers};
use phoenix_core::config::Config;
use phoenix_core::model::Inventory;
use phoenix_core::plan::{PlanInput, PlanMemory, plan};
use phoenix_core::policy::ImageVerdicts;
use phoenix_core::render::{RenderOptions, render_text};
use phoenix_core::spec::ParsedGroup;
use phoenix_source::{PollOutcome, Revision, Source};

use crate::config_file;

/// Arguments of `phoenix plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon config file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Print the versioned JSON plan document instead of text.
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

/// Build the plan and print it.
pub fn run(args: &Args) -> Result<ExitCode> {
    let config = config_file::load(&args.config)?;
    let revision = load_revision(&config)?;
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
                desired.path,
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
    let (inventories, images) = collect_inventories(&config, &revision, now)?;
    let outcome = plan(&PlanInput {
        revision: revision.id.as_str(),
        owner: &config.owner,
        groups: &groups,
        inventories: &inventories,
        config: &config.reconcile,
        memory: &PlanMemory::default(),
        failed: &[],
        images: &images,
        now,
    })
    .context("planning failed")?;
    let mut document = outcome.document;
    if let Some(name) = &args.group {
        document.retain_group(name);
    }

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&document).context("serialize the plan")?
        );
    } else {
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
        PollOutcome::Rejected { rejection, .. } => {
            let mut message = format!("the newest revision {} is rejected:", rejection.revision);
            for problem in &rejection.problems {
                message.push_str(&format!("\n  {problem}"));
            }
            Err(anyhow!(message))
        }
        PollOutcome::Unchanged => match source.current() {
            Some(revision) => Ok((*revision).clone()),
            None => bail!("the source returned no revision"),
        },
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
) -> Result<(Vec<Inventory>, ImageVerdicts)> {
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
        Ok((inventories, images))
    })
}
