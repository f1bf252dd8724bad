//! A fault storm: an API server upgrade as its clients see it, in about ten seconds.
//!
//! Outages (connections refused and cut), bursts of 500s and 503s, throttling with Retry-After,
//! history compacted during an outage (a 410 Gone and a relist), and dropped watches, in the
//! order a rolling restart of API servers behind a load balancer produces them. Shared by the
//! fault tests and the freshness benchmark.
//!
//! Invariant: when [`upgrade`] returns the server is reachable and every injected answer has
//! been given (the client retried through all of them), so "the API is back" is a moment.

use std::time::{Duration, Instant};

use serde_json::json;

use super::TestApiServer;

/// How long [`drained`] waits for the client to ask for every injected answer.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// Runs the storm against `api` while a client watches it.
pub async fn upgrade(api: &TestApiServer) {
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    // The first server goes down; etcd compacts meanwhile, so resuming watches get 410.
    api.set_unreachable(true);
    api.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "storm-marker", "namespace": "default"},
        "spec": {"clusterIP": "None"}}));
    api.expire_history();
    pause(1200).await;
    // Its replacement starts: errors while its caches fill, then shutdown 503s of the next.
    api.set_unreachable(false);
    api.fail_next(8);
    api.drop_watches();
    drained(api).await;
    api.unavailable_next(6);
    api.drop_watches();
    drained(api).await;
    // Clients piling back in are throttled by priority and fairness.
    api.throttle_next(2, 1);
    api.drop_watches();
    drained(api).await;
    api.set_unreachable(true);
    pause(1500).await;
    api.set_unreachable(false);
    api.fail_next(5);
    api.drop_watches();
    drained(api).await;
    // The last server goes down and comes back.
    api.set_unreachable(true);
    pause(2000).await;
    api.set_unreachable(false);
}

/// Waits until every injected answer has been given; fails after [`DRAIN_LIMIT`] (the client
/// stopped retrying).
pub async fn drained(api: &TestApiServer) {
    let started = Instant::now();
    while api.injected_pending() > 0 {
        assert!(
            started.elapsed() < DRAIN_LIMIT,
            "{} injected answers never asked for: the watches stopped retrying",
            api.injected_pending()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
