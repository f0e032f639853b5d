#!/bin/bash
# Plays a Slurm job array locally: N shards of a small digits sweep one after another into one
# folder, then the merge step. CI runs it to keep the Slurm example working.
set -euo pipefail
out=$(mktemp -d)
cat > "$out/sweep.toml" <<TOML
name = "local-array"
out = "$out/runs"
activations = ["relu", "relu-softsign"]
seeds = 3
epochs = 2
[[datasets]]
name = "digits"
TOML
N=3
for I in $(seq 0 $((N - 1))); do
  SLURM_ARRAY_TASK_ID=$I SLURM_ARRAY_TASK_COUNT=$N SLURM_CPUS_PER_TASK=2 SWEEP_CONFIG="$out/sweep.toml" \
    bash examples/slurm/sweep.sbatch
done
runs=$(find "$out/runs/local-array" -name manifest.json | wc -l)
[ "$runs" -eq 6 ] || { echo "expected 6 runs, found $runs"; exit 1; }
cd "$out" && ln -s "$OLDPWD/target" target && bash "$OLDPWD/examples/slurm/merge.sh" "$out/runs/local-array"
test -s "$out/reports/local-array/index.html"
echo "local array: 6 runs in $N shards, merged report at $out/reports/local-array/index.html"
