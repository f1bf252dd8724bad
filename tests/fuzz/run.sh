#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60), one at a time, and reports executions
# and findings per target; exits non-zero when any target found a crash.
#
#   tests/fuzz/run.sh                 # all targets, 60 s each
#   FUZZ_SECONDS=120 tests/fuzz/run.sh query
#
# cargo-fuzz needs nightly-only compiler flags (-Z sanitizer-coverage...). Only the stable
# toolchain is installed here, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
#
# Settings (environment):
#   FUZZ_SECONDS    time per target (default 60)
#   FUZZ_SANITIZER  none (default: safe Rust, twice the executions) or address
#   FUZZ_TARGET_DIR build directory (default tests/fuzz/target)
#   FUZZ_WORK       where the growing corpus, artifacts and logs go (default tests/fuzz),
#                   as corpus/<target>, artifacts/<target>/, logs/<target>.log (all ignored
#                   by git); the committed seeds in tests/fuzz/seeds/<target> are read only.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$fuzz_dir/../.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
target_dir="${FUZZ_TARGET_DIR:-$fuzz_dir/target}"
work="${FUZZ_WORK:-$fuzz_dir}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
# Resolve the same dependency versions as the root package.
[ -f "$fuzz_dir/Cargo.lock" ] || cp "$root/Cargo.lock" "$fuzz_dir/Cargo.lock"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(query cluster_file api_objects)

cd "$root"
cargo fuzz build --fuzz-dir "$fuzz_dir" -s "$sanitizer" --target-dir "$target_dir"

failed=0
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target" artifacts="$work/artifacts/$target" log="$work/logs/$target.log"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    stamp="$(mktemp)"
    set +e
    cargo fuzz run --fuzz-dir "$fuzz_dir" -s "$sanitizer" --target-dir "$target_dir" \
        "$target" "$corpus" "$fuzz_dir/seeds/$target" -- \
        -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    set -e
    runs="$(grep -o '^stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    found="$(find "$artifacts" -type f -newer "$stamp" | head -1)"
    rm -f "$stamp"
    if [ "$status" -eq 0 ]; then
        echo "$target: ${runs:-?} executions in ${seconds}s, ${cov:-cov: ?}, nothing found"
    else
        failed=1
        echo "$target: FOUND a failure after ${runs:-?} executions (exit $status): ${found:-see $log}"
        grep -m3 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" || tail -20 "$log"
    fi
done
exit "$failed"
