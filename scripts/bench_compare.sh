#!/usr/bin/env bash
# Training throughput side by side, in one session: PyTorch on the CPU (scripts/bench_pytorch.py)
# and necrosis (examples/bench_train.rs), LeNet on 28x28, batch 64, 2 threads, alternated so both
# see the same machine; both report the batch over the median step time. Prints every line, then
# each necrosis case's median over the rounds and its ratio to PyTorch's median.
# Needs `pip install torch` (CPU is enough). Usage: scripts/bench_compare.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
cargo build --release --quiet --example bench_train
log=$(mktemp)
for r in $(seq 1 "$rounds"); do
  python3 scripts/bench_pytorch.py --threads 2 --steps 300 | tee -a "$log"
  ./target/release/examples/bench_train --threads 2 --steps 384 | tee -a "$log"
done
python3 - "$log" <<'PY'
import re, statistics, sys
seen = {}
for line in open(sys.argv[1]):
    m = re.match(r"(pytorch relu|\S+ instruments=(?:on|off)): ([0-9.]+) img/s", line)
    if m:
        seen.setdefault(m.group(1), []).append(float(m.group(2)))
torch = statistics.median(seen["pytorch relu"]) if "pytorch relu" in seen else None
for key, values in sorted(seen.items()):
    ips = statistics.median(values)
    ratio = f", {ips / torch:.2f}x PyTorch" if torch and key != "pytorch relu" else ""
    print(f"median {key}: {ips:.1f} img/s over {len(values)} rounds{ratio}")
PY
