#!/usr/bin/env bash
# Kill safety, repeated: runs the kill/resume integration test (tests/cli/kill_resume.rs) N times
# (default 5), each with fresh random kill moments. That test, which `cargo test` also runs:
#   - kills `necrosis-report run --activations relu,relu-softsign --seeds 2 --epochs 4` with
#     SIGKILL at >= 10 random moments (0.05-1.5 s after each start), checks after every kill
#     that each run directory with a manifest has readable parquet files holding epochs
#     0..epochs_completed (and that `necrosis-report inspect` succeeds), reruns the command
#     until it completes, and compares the records with an uninterrupted sweep (all but the
#     wall-clock columns `seconds` and `images_per_sec`, plus the final weights);
#   - sends SIGINT during training: exit 130, a `necrosis-report resume` hint, resume completes;
#   - starts two sweeps into one --out at once (also over a killed process's stale lock):
#     both exit 0 and every run is complete and equal to the uninterrupted one.
# A failure prints KILL_TEST_SEED=...; rerun with that variable set to replay its kill moments.
#
# Usage, from the repository root:  scripts/kill_test.sh [N]
set -euo pipefail
n="${1:-5}"
# --workspace, as the README's test command: building one package alone would unify features
# differently and compile polars a second time.
cargo build --release --workspace --quiet
for i in $(seq 1 "$n"); do
    echo "== kill test $i/$n"
    log="$(mktemp)"
    status=0
    cargo test --release --workspace --quiet --test cli -- kill_resume --nocapture >"$log" 2>&1 || status=$?
    grep -E "KILL_TEST_SEED|kills in|test result|panicked|files left" "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "kill test $i failed; full log: $log"
        exit 1
    fi
    rm -f "$log"
done
echo "all $n kill tests passed"
