//! Snapshot and read-path costs with 10,000 groups: building a snapshot (once per loop
//! change), the `/api/v1/status` body (every request), the first `/api/v1/groups`
//! serialisation (once per snapshot), and a whole `GET /api/v1/status` through the router.

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use phoenix_api::*;
use tokio::sync::{broadcast, mpsc, watch};
use tower::ServiceExt;

const GROUPS: usize = 10_000;

fn bench(c: &mut Criterion) {
    c.bench_function("snapshot_new_10k_groups", |b| {
        b.iter_batched(
            || synthetic::parts(GROUPS),
            Snapshot::new,
            criterion::BatchSize::LargeInput,
        )
    });
    let snapshot = synthetic::snapshot(GROUPS);
    c.bench_function("status_body_10k_groups", |b| {
        b.iter(|| snapshot.status_body(SystemTime::now()))
    });
    c.bench_function("groups_body_first_serialisation_10k_groups", |b| {
        b.iter_batched(
            || synthetic::snapshot(GROUPS),
            |s| s.groups_body(),
            criterion::BatchSize::LargeInput,
        )
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (_tx, snapshots) = watch::channel(Arc::new(snapshot));
    let (commands, _rx) = mpsc::channel(8);
    let (events, _) = broadcast::channel(8);
    let router = build_router(ApiState::new(
        ApiConfig::default(),
        snapshots,
        commands,
        events,
        Arc::new(Metrics::default()),
    ));
    c.bench_function("router_get_status_10k_groups", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = Request::get("/api/v1/status")
                    .body(Body::empty())
                    .expect("a request");
                let response = router.clone().oneshot(request).await.expect("infallible");
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body")
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
