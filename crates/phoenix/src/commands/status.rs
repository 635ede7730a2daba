//! `phoenix status [--server URL]`: ask a running daemon how things stand.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Arguments of `phoenix status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the daemon's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    server: String,
    /// Print the raw JSON of `GET /api/v1/status`.
    #[arg(long)]
    json: bool,
}

/// Fetch and print the status; exit 1 when the daemon cannot be reached.
pub fn run(args: &Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let base = args.server.trim_end_matches('/');
    let (status, groups) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("build the HTTP client")?;
        let get = |path: &'static str| {
            let client = client.clone();
            let url = format!("{base}{path}");
            async move {
                let response = client
                    .get(&url)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                if !response.status().is_success() {
                    bail!("{url} answered {}", response.status());
                }
                response
                    .json::<Value>()
                    .await
                    .with_context(|| format!("{url} did not answer JSON"))
            }
        };
        anyhow::Ok((get("/api/v1/status").await?, get("/api/v1/groups").await?))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let revision = &status["revision"];
    println!(
        "revision  {}",
        revision["id"].as_str().unwrap_or("(none yet)")
    );
    if let Some(error) = revision.get("error").filter(|e| !e.is_null()) {
        println!(
            "rejected  {} {}:{}:{}: {}",
            error["revision"].as_str().unwrap_or(""),
            error["path"].as_str().unwrap_or(""),
            error["line"],
            error["column"],
            error["message"].as_str().unwrap_or("")
        );
    }
    let g = &status["groups"];
    println!(
        "groups    {} total: {} in sync, {} drifted, {} progressing, {} failed",
        g["total"], g["in_sync"], g["drifted"], g["progressing"], g["failed"]
    );
    for inventory in status["inventory"].as_array().into_iter().flatten() {
        println!(
            "provider  {} {} instances, {} ({}s old)",
            inventory["provider"].as_str().unwrap_or("?"),
            inventory["instances"],
            if inventory["complete"] == true {
                "complete"
            } else {
                "INCOMPLETE"
            },
            inventory["age_seconds"]
        );
    }
    println!(
        "plans     {} running, {} awaiting approval",
        status["plans"]["running"], status["plans"]["awaiting_approval"]
    );
    println!(
        "alerts    {} pending, {} failed",
        status["alerts"]["pending"], status["alerts"]["failed"]
    );
    let windows = &status["windows"];
    if windows.is_object() {
        let next = windows["next_change"].as_str().unwrap_or("none");
        let lifted = windows["override"]["until"]
            .as_str()
            .map(|until| format!(", override until {until}"))
            .unwrap_or_default();
        println!(
            "windows   {} group(s) blocked, next change {next}{lifted}",
            windows["blocked_groups"]
        );
    }
    for group in groups["groups"].as_array().into_iter().flatten() {
        println!(
            "  {:<24} {:<12} {:<9} {} instance(s)",
            group["name"].as_str().unwrap_or("?"),
            group["sync"].as_str().unwrap_or("?"),
            group["health"].as_str().unwrap_or("?"),
            group["instances"].as_array().map_or(0, Vec::len)
        );
    }
    Ok(ExitCode::SUCCESS)
}
