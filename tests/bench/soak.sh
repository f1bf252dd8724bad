#!/usr/bin/env bash
# The soak: sustained dnsperf load on peerdns while the test Kubernetes API server churns
# endpoints (scale up and down, readiness flips, recreated pods, dropped watches, 410 relists);
# reports lost queries, wrong answers found by re-checking against the expected state, and
# memory over time, and fails if any query was lost, any answer stayed wrong, or memory grew.
#
#   tests/bench/soak.sh                 # 5 minutes at 5000 QPS
#   SOAK_SECS=60 SOAK_QPS=2000 tests/bench/soak.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v dnsperf >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null
fi
export SOAK_SECS="${SOAK_SECS:-300}" SOAK_QPS="${SOAK_QPS:-5000}"
cd "$root"
cargo test --release --locked --test e2e soak_under_churn -- --ignored --nocapture
