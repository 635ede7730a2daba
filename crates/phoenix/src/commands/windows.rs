//! `phoenix windows override --until T --reason TEXT [--by WHO] [--server URL]`: ask a
//! running daemon to lift every change window until `T` (design section 14), through
//! `POST /api/v1/windows/override` with the API's bearer token.
//!
//! `--until` is an RFC 3339 time (`2026-12-05T18:00:00Z`, any offset) or a duration from
//! now (`90m`, `2h`). `--by` defaults to `$USER` (then `cli`). The token is read from the
//! environment variable named by `--token-env` (default `PHOENIX_API_TOKEN`), never from
//! the command line. Exit 0 when the daemon recorded the override, 1 otherwise (the
//! daemon's error message, naming the field, is printed).

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Arguments of `phoenix windows`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: WindowsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WindowsCommand {
    /// Lift every change window until a time (POST /api/v1/windows/override).
    Override(OverrideArgs),
}

/// Arguments of `phoenix windows override`.
#[derive(Debug, clap::Args)]
struct OverrideArgs {
    /// Until when: an RFC 3339 time, or a duration from now such as `2h`.
    #[arg(long, value_name = "TIME")]
    until: String,
    /// Why (recorded and sent with the `window_override` alert).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Who asks (recorded); default $USER.
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Base URL of the daemon's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    server: String,
    /// The environment variable holding the API bearer token.
    #[arg(long, default_value = "PHOENIX_API_TOKEN", value_name = "NAME")]
    token_env: String,
}

/// Run `phoenix windows ...`.
pub fn run(args: &Args) -> Result<ExitCode> {
    match &args.command {
        WindowsCommand::Override(args) => override_windows(args),
    }
}

/// `--until` as the RFC 3339 text the API reads.
fn until_text(until: &str, now: SystemTime) -> Result<String> {
    if let Ok(t) = phoenix_core::time::parse_rfc3339(until) {
        return Ok(phoenix_core::time::rfc3339(t));
    }
    match phoenix_core::duration::parse(until) {
        Ok(d) if d > Duration::ZERO => Ok(phoenix_core::time::rfc3339(now + d)),
        _ => bail!(
            "--until: `{until}` is neither an RFC 3339 time (2026-12-05T18:00:00Z) nor a duration (2h)"
        ),
    }
}

fn override_windows(args: &OverrideArgs) -> Result<ExitCode> {
    let token = std::env::var(&args.token_env).with_context(|| {
        format!(
            "the API token is read from ${}, which is not set",
            args.token_env
        )
    })?;
    let by = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "cli".to_owned());
    let body = json!({
        "until": until_text(&args.until, SystemTime::now())?,
        "reason": args.reason,
        "by": by,
    });
    let url = format!(
        "{}/api/v1/windows/override",
        args.server.trim_end_matches('/')
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let (status, text) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("build the HTTP client")?;
        let response = client
            .post(&url)
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("cannot read the answer of {url}"))?;
        anyhow::Ok((status, text))
    })?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = answer["error"]["message"].as_str().unwrap_or(text.as_str());
        bail!("{url} answered {status}: {message}");
    }
    println!(
        "every change window is lifted until {} (override {} by {}); a pass is running",
        answer["until"].as_str().unwrap_or("?"),
        answer["id"],
        answer["by"].as_str().unwrap_or("?"),
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_a_time_or_a_duration_from_now() {
        let now = phoenix_core::time::parse_rfc3339("2026-12-04T21:00:00Z").expect("a time");
        assert_eq!(
            until_text("2026-12-05T01:00:00+02:00", now).expect("a time"),
            "2026-12-04T23:00:00Z"
        );
        assert_eq!(
            until_text("90m", now).expect("a duration"),
            "2026-12-04T22:30:00Z"
        );
        for bad in ["soon", "0s", ""] {
            let err = until_text(bad, now).expect_err(bad).to_string();
            assert!(err.contains("--until"), "{err}");
        }
    }
}
