#!/usr/bin/env bash
# Builds peerdns in release mode and measures it next to Knot DNS, NSD and hickory-dns with the
# peer harness in tests/bench/peers/ (dnsperf over loopback, server pinned to core 0, dnsperf
# to core 1), then prints the harness's summary table (queries per server CPU-second, ratios
# to Knot in the same round, p99 at a fixed rate, RSS).
#
#   tests/bench/run_peers.sh                         # small and large clusters, pinned, 3 rounds
#   SIZES=small REPEATS=1 SERVERS="knot peerdns" tests/bench/run_peers.sh   # a quick look
#
# Knobs are the harness's (SIZES MODES REPEATS DURATION SERVERS ...; see peers/README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
harness=$root/tests/bench/peers

cargo build --release --locked --manifest-path "$root/Cargo.toml"
bash "$harness/setup.sh"

export SERVERS="${SERVERS:-knot nsd hickory peerdns}"
export SIZES="${SIZES:-small large}"
export MODES="${MODES:-pinned}"
export REPEATS="${REPEATS:-3}"
export PEERDNS_CMD="$root/target/release/peerdns --file {yaml} --listen 127.0.0.1:{port} --admin-listen 127.0.0.1:0 --workers {workers}"
cd "$harness"
bash ./run_peers.sh
