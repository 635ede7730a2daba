//! Serves the API over a synthetic snapshot, for load tests (`wrk`) and for looking at the
//! dashboard without a daemon:
//!
//! ```sh
//! cargo run --release -p phoenix-api --example fixture_server -- 127.0.0.1:8080 10000
//! ```
//!
//! Arguments: listen address (default `127.0.0.1:8080`), group count (default 100).
//! The API token is `fixture-token`, the webhook secret `fixture-secret`. Every few
//! seconds a synthetic event is broadcast so the dashboard's live log moves.

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_api::*;
use tokio::sync::{broadcast, mpsc, watch};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let groups: usize = args
        .next()
        .map(|n| n.parse().expect("group count must be a number"))
        .unwrap_or(100);

    let (_snapshots_tx, snapshots) = watch::channel(Arc::new(synthetic::snapshot(groups)));
    let (commands_tx, mut commands) = mpsc::channel(64);
    let (events, _) = broadcast::channel(256);
    let config = ApiConfig {
        token: Secret::new("fixture-token"),
        webhook_secret: Secret::new("fixture-secret"),
        ..ApiConfig::default()
    };
    let state = ApiState::new(
        config,
        snapshots,
        commands_tx,
        events.clone(),
        Arc::new(Metrics::default()),
    );

    // A stand-in loop: print commands, refuse plan commands as unknown.
    tokio::spawn(async move {
        while let Some(command) = commands.recv().await {
            match command {
                ApiCommand::Approve { plan_id, reply } | ApiCommand::Cancel { plan_id, reply } => {
                    let _ = reply.send(Err(PlanCommandError::NotFound { plan_id }));
                }
                other => println!("command: {other:?}"),
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        let mut n = 0u32;
        loop {
            tick.tick().await;
            n += 1;
            let _ = events.send(ApiEvent::StepTransition {
                plan_id: "plan-00007".into(),
                index: n % 3,
                action: "wait_healthy".into(),
                state: StepState::Running,
                at: SystemTime::now(),
            });
        }
    });

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving {groups} synthetic groups on http://{addr}/");
    let closer = state.clone();
    serve(listener, build_router(state), async move {
        let _ = tokio::signal::ctrl_c().await;
        closer.close_streams();
    })
    .await
}
