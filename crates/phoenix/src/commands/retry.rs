//! `phoenix retry GROUP [--server URL]`: ask a running daemon to lift the failed-generation
//! block of a group's current hash (design section 15), through
//! `POST /api/v1/groups/{name}/retry` with the API's bearer token.
//!
//! The token is read from the environment variable named by `--token-env` (default
//! `PHOENIX_API_TOKEN`, the usual `server.token_env`), never from the command line.
//! Exit 0 when the daemon accepted the retry, 1 otherwise (the daemon's error message
//! is printed).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Arguments of `phoenix retry`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group whose current hash may be tried again.
    #[arg(value_name = "GROUP")]
    group: String,
    /// Base URL of the daemon's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    server: String,
    /// The environment variable holding the API bearer token.
    #[arg(long, default_value = "PHOENIX_API_TOKEN", value_name = "NAME")]
    token_env: String,
}

/// Send the retry and print what the daemon did.
pub fn run(args: &Args) -> Result<ExitCode> {
    let token = std::env::var(&args.token_env).with_context(|| {
        format!(
            "the API token is read from ${}, which is not set",
            args.token_env
        )
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let url = format!(
        "{}/api/v1/groups/{}/retry",
        args.server.trim_end_matches('/'),
        args.group
    );
    let (status, body) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("build the HTTP client")?;
        let response = client
            .post(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .with_context(|| format!("cannot read the answer of {url}"))?;
        anyhow::Ok((status, body))
    })?;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = json["error"]["message"].as_str().unwrap_or(body.as_str());
        bail!("{url} answered {status}: {message}");
    }
    let hash = json["spec_hash"].as_str().unwrap_or("?");
    if json["cleared"].as_bool() == Some(true) {
        println!(
            "retry of {} at {hash}: the failed-generation block is lifted; a pass is running",
            args.group
        );
    } else {
        println!(
            "retry of {} at {hash}: that hash was not blocked; a pass is running",
            args.group
        );
    }
    Ok(ExitCode::SUCCESS)
}
