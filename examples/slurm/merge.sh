#!/bin/bash
# After every array task of sweep.sbatch has finished: one report over the whole sweep. The
# shards wrote disjoint run directories into the same sweep folder, so the folder is the sweep.
set -euo pipefail
SWEEP_DIR=${1:-runs/mnist-slurm}
./target/release/necrosis-report resume "$SWEEP_DIR"   # finishes any task that was pre-empted
./target/release/necrosis-report analyze "$SWEEP_DIR" --out "reports/$(basename "$SWEEP_DIR")"
