#!/usr/bin/env bash
# A/B run: queries per server CPU-second of two peerdns builds on the same load, in the same
# run, on the same cluster files as the peer harness (tests/bench/peers: gen_zone.py, the same
# query mix). The base build is a git revision of this repository; the other is the working
# tree. Each round measures both, in alternating order, server pinned to core 0 and dnsperf
# to core 1; the verdict is the median of the per-round ratios (new / base), since these
# machines are noisy.
#
#   BASE=279f40e tests/bench/ab.sh                      # small and large, 5 rounds of 10 s
#   BASE=HEAD~3 SIZES=small ROUNDS=3 tests/bench/ab.sh  # a quick look
#
# Knobs: BASE (required), SIZES, ROUNDS, DURATION (s), CLIENTS, OUTSTANDING, BENCH_WORK
# (zones and builds, default /tmp/peerdns-bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
harness=$root/tests/bench/peers
work=${BENCH_WORK:-/tmp/peerdns-bench}
base=${BASE:?set BASE to the git revision to compare with}
sizes=${SIZES:-small large}
rounds=${ROUNDS:-5}
duration=${DURATION:-10}
clients=${CLIENTS:-4}
outstanding=${OUTSTANDING:-200}
command -v dnsperf >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf >/dev/null; }

mkdir -p "$work"
title="A/B: base $(git -C "$root" rev-parse --short "$base") vs working tree $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo +changes); $(date -u +%F\ %H:%M) UTC"
base_tree="$work/ab-base"
git -C "$root" worktree remove --force "$base_tree" 2>/dev/null || rm -rf "$base_tree"
git -C "$root" worktree add --detach --force "$base_tree" "$base" >/dev/null
cargo build --release --locked --quiet --manifest-path "$base_tree/Cargo.toml" \
    --target-dir "$work/ab-target"
cargo build --release --locked --quiet --manifest-path "$root/Cargo.toml"
declare -A BIN=([base]="$work/ab-target/release/peerdns" [new]="$root/target/release/peerdns")
declare -A PORT=([base]=15371 [new]=15372)
declare -A PID=()
HZ=$(getconf CLK_TCK)

cleanup() {
    for p in "${PID[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    git -C "$root" worktree remove --force "$base_tree" 2>/dev/null || true
}
trap cleanup EXIT

ticks() {  # utime + stime of a process, in clock ticks
    local f
    f=$(cat "/proc/$1/stat")
    f=${f##*) }
    set -- $f
    echo $(( ${12} + ${13} ))
}

measure() {  # name queries -> "completed cpu_seconds"
    local name=$1 queries=$2 t0 t1 out
    t0=$(ticks "${PID[$name]}")
    out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "${PORT[$name]}" -d "$queries" -c "$clients" \
        -q "$outstanding" -T 1 -t 2 -l "$duration" 2>&1)
    t1=$(ticks "${PID[$name]}")
    local completed
    completed=$(awk '/Queries completed/{print $3}' <<< "$out")
    echo "${completed:-0} $(awk -v t=$(( t1 - t0 )) -v hz="$HZ" 'BEGIN{printf "%.3f", t/hz}')"
}

echo "$title"
# Both binaries run in the work folder: from the repository they would read its
# config/peerdns.toml, which an older build may not know the keys of.
cd "$work"
for size in $sizes; do
    zdir="$work/zones/$size"
    if [ ! -f "$zdir/cluster.yaml" ]; then
        case $size in
          small) python3 "$harness/gen_zone.py" -S 1000 -P 3 -o "$zdir" >/dev/null ;;
          large) python3 "$harness/gen_zone.py" -S 20000 -P 5 -o "$zdir" >/dev/null ;;
          *) echo "unknown size $size" >&2; exit 1 ;;
        esac
    fi
    queries="$zdir/queries.txt"
    for name in base new; do
        taskset -c 0 "${BIN[$name]}" --file "$zdir/cluster.yaml" --listen "127.0.0.1:${PORT[$name]}" \
            --admin-listen 127.0.0.1:0 --workers 1 > "$work/ab-$name.log" 2>&1 &
        PID[$name]=$!
        python3 "$harness/probe_ready.py" "${PORT[$name]}" "${PID[$name]}" 600
        taskset -c 1 dnsperf -s 127.0.0.1 -p "${PORT[$name]}" -d "$queries" -c "$clients" -l 2 \
            > /dev/null 2>&1
    done
    ratios=()
    printf '%-6s %5s %14s %14s %7s\n' size round "base q/CPU-s" "new q/CPU-s" ratio
    for round in $(seq 1 "$rounds"); do
        order=(base new)
        [ $((round % 2)) = 0 ] && order=(new base)
        declare -A QPC=()
        for name in "${order[@]}"; do
            read -r completed cpu <<< "$(measure "$name" "$queries")"
            QPC[$name]=$(awk -v q="$completed" -v c="$cpu" 'BEGIN{printf "%.0f", (c > 0 ? q / c : 0)}')
            sleep 1
        done
        ratio=$(awk -v a="${QPC[base]}" -v b="${QPC[new]}" 'BEGIN{printf "%.3f", (a > 0 ? b / a : 0)}')
        ratios+=("$ratio")
        printf '%-6s %5s %14s %14s %7s\n' "$size" "$round" "${QPC[base]}" "${QPC[new]}" "$ratio"
    done
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    echo "$size: median new/base $median over $rounds rounds"
    for name in base new; do kill "${PID[$name]}" 2>/dev/null || true; wait "${PID[$name]}" 2>/dev/null || true; done
    PID=()
done
