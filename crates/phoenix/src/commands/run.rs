//! `phoenix run --config F`: the daemon.
//!
//! Lifecycle: parse and validate the config (exit 64 listing every problem) -> build
//! (open the store, the source and the providers; bind the API port) -> spawn the API
//! server and the reconcile loop -> on SIGTERM/SIGINT stop taking work and drain within
//! a grace period. SIGHUP, or a change to the config file, reloads the config through
//! the same validation; a bad new config is refused and the old one keeps running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use phoenix_api::{
    ApiConfig, ApiState, Metrics, Secret, ServerLimits, Snapshot, build_router, serve_with_limits,
};
use phoenix_core::config::Config;
use phoenix_daemon::daemon::{Channels, LoopOptions};
use tokio::sync::{broadcast, mpsc, watch};

use crate::config_file;

/// Exit code for a configuration error (EX_CONFIG is 78; 64 is EX_USAGE, as the
/// product contract asks).
pub const EXIT_BAD_CONFIG: u8 = 64;
/// How long in-flight HTTP requests get to finish after a shutdown signal.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `phoenix run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon config file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Run the daemon until SIGTERM/SIGINT.
pub fn run(args: &Args) -> Result<ExitCode> {
    let config = match config_file::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("phoenix: error: {err:#}");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    init_tracing(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let result = runtime.block_on(run_async(config, args.config.clone()));
    // A source poll stuck on a silent remote (libgit2 has no timeout) must not hold the
    // exit: blocking tasks still running after a short grace are abandoned.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Read a secret from the environment variable a config key names.
fn secret_from_env(var: Option<&str>, what: &str) -> Result<Option<Secret>> {
    let Some(var) = var else { return Ok(None) };
    match std::env::var(var) {
        Ok(value) => Ok(Secret::new(value.into_bytes())),
        Err(std::env::VarError::NotPresent) => {
            tracing::warn!(
                variable = var,
                "{what}: the environment variable is not set; the feature is disabled"
            );
            Ok(None)
        }
        Err(err) => Err(err).with_context(|| format!("{what}: cannot read ${var}")),
    }
}

async fn run_async(config: Config, config_path: PathBuf) -> Result<()> {
    let shutdown = shutdown_signal();
    let token = secret_from_env(config.server.token_env.as_deref(), "server.token_env")?;
    let webhook_secret = secret_from_env(
        config.webhooks.git.as_ref().map(|g| g.secret_env.as_str()),
        "webhooks.git.secret_env",
    )?;
    let mut alert_secrets = std::collections::BTreeMap::new();
    for alert in &config.alerts {
        let Some(var) = alert.secret_env.as_deref() else {
            continue;
        };
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => {
                alert_secrets.insert(alert.name.clone(), value.into_bytes());
            }
            Ok(_) | Err(std::env::VarError::NotPresent) => {
                anyhow::bail!(
                    "alerts `{}`: secret_env ${var} is not set; refusing to send unsigned alerts",
                    alert.name
                )
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("alerts `{}`: cannot read ${var}", alert.name));
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    tracing::info!(listen = %config.server.listen, owner = %config.owner, mode = ?config.reconcile.mode, "phoenix starting");

    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (command_tx, command_rx) = mpsc::channel(256);
    let (event_tx, _) = broadcast::channel(1024);
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let metrics = Arc::new(Metrics::default());
    let api = ApiState::new(
        ApiConfig {
            token,
            webhook_secret,
            request_timeout: config.server.request_timeout,
            max_sse_subscribers: config.server.max_sse_subscribers,
            ..ApiConfig::default()
        },
        snapshot_rx,
        command_tx,
        event_tx.clone(),
        metrics.clone(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        let router = build_router(api.clone());
        let limits = ServerLimits {
            header_read_timeout: config.server.header_read_timeout,
            request_timeout: config.server.request_timeout,
            max_connections: config.server.max_connections,
            max_sse_subscribers: config.server.max_sse_subscribers,
        };
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            serve_with_limits(listener, router, limits, shutdown).await
        })
    };
    tokio::spawn(watch_for_reloads(config_path, reload_tx, stop_rx.clone()));

    let channels = Channels {
        snapshots: snapshot_tx,
        commands: command_rx,
        events: event_tx,
        metrics,
        reloads: reload_rx,
    };
    let daemon = phoenix_daemon::daemon::run(
        config,
        LoopOptions::default(),
        channels,
        &alert_secrets,
        shutdown,
    );
    let outcome = daemon.await;

    // Drain: stop the server, end event streams, give requests a grace period.
    let _ = stop_tx.send(true);
    api.close_streams();
    match tokio::time::timeout(DRAIN_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => {
            tracing::error!(error = %phoenix_core::chain(&err), "HTTP server failed")
        }
        Ok(Err(err)) => {
            tracing::error!(error = %phoenix_core::chain(&err), "HTTP server task failed")
        }
        Err(_) => tracing::warn!("HTTP server did not drain within {DRAIN_GRACE:?}"),
    }
    outcome.context("the daemon could not start")?;
    tracing::info!("phoenix stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled (that is only after the first reconcile pass): a
/// SIGTERM during start-up must drain like any other, not kill the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// SIGHUP, or a change of the config file's modification time, re-reads and validates
/// the config; a valid one is handed to the loop, a bad one is refused with every
/// problem logged.
async fn watch_for_reloads(
    path: PathBuf,
    reloads: mpsc::Sender<Config>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).expect("install the SIGHUP handler");
    let mut last = modified(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = hup.recv() => tracing::info!("SIGHUP received"),
            _ = tick.tick() => {
                let now = modified(&path);
                if now == last {
                    continue;
                }
                last = now;
                tracing::info!(path = %path.display(), "config file changed");
            }
        }
        match config_file::load(&path) {
            Ok(config) => {
                if reloads.send(config).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "new config refused; the running config stays in force")
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
