#!/usr/bin/env bash
# Training throughput side by side, in one session: PyTorch on the CPU (scripts/bench_pytorch.py)
# and necrosis (examples/bench_train.rs), LeNet on 28x28, batch 64, 2 threads, alternated twice so
# both see the same machine. Prints every line and the ratios of the best runs.
# Needs `pip install torch` (CPU is enough). Usage: scripts/bench_compare.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
cargo build --release --quiet --example bench_train
log=$(mktemp)
for r in $(seq 1 "$rounds"); do
  python3 scripts/bench_pytorch.py --threads 2 --steps 300 | tee -a "$log"
  ./target/release/examples/bench_train --threads 2 --samples 8192 --epochs 2 | tee -a "$log"
done
python3 - "$log" <<'PY'
import re, sys
best = {}
for line in open(sys.argv[1]):
    m = re.match(r"(.+?)(?: instruments=(on|off))?: ([0-9.]+) img/s", line)
    if m:
        key = m.group(1) + ("" if m.group(2) is None else " instruments=" + m.group(2))
        best[key] = max(best.get(key, 0.0), float(m.group(3)))
torch = best.get("pytorch relu")
for key, ips in sorted(best.items()):
    ratio = f", {ips / torch:.2f}x PyTorch" if torch and not key.startswith("pytorch") else ""
    print(f"best {key}: {ips:.1f} img/s{ratio}")
for act in ["relu", "relu-softsign"]:
    on, off = best.get(f"{act} instruments=on"), best.get(f"{act} instruments=off")
    if on and off:
        print(f"instrument overhead {act}: {100 * (1 - on / off):.1f} %")
PY
