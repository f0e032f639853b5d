#!/usr/bin/env bash
# Training throughput of necrosis against PyTorch on the CPU, every case the README's speed section
# shows, in one session, and the Markdown table it pastes. Each round alternates PyTorch
# (scripts/bench_pytorch.py) and necrosis (examples/bench_train.rs) case by case, the order
# flipping every round, so both see the same machine; both report the batch over the median step
# time, or training images over a whole run's wall time.
#   (a) LeNet, 1×28×28, batch 64: every built-in activation, instruments off and on, and each
#       activation's step against relu (interleaved, necrosis only);
#   (b) cifar, cifar-bn, resnet20, 3×32×32, batch 64 and 128: relu and relu-softsign;
#   (c) a whole run on LeNet (8192 synthetic samples, 2 epochs, probe 2048, test 2048, batch 64):
#       relu and relu-softsign, end to end (epoch-0 probe, evaluations, probes, checkpoints).
# Usage: scripts/bench_compare.sh [rounds]   (default 5; needs torch in $PYTHON, default python3)
# Env: PYTHON, BENCH_THREADS (2), BENCH_QUICK=1 (tiny sizes: proves it runs and parses, in a few
# minutes; its numbers mean nothing), CARGO_TARGET_DIR as cargo reads it.
#
# Time, 5 rounds on 2 cores at the README's speeds (necrosis LeNet ≈ 5000 img/s, cifar ≈ 380,
# cifar-bn ≈ 315, resnet20 ≈ 214; PyTorch taken as 3200 on LeNet and as necrosis elsewhere):
#   (a) necrosis: relu on/off 2×128 steps + 10 activations × (on/off + vs relu) 4×128 = 5376
#       steps × 64 / 5000 ≈ 69 s (+10 % for the transcendentals ≈ 76 s); PyTorch: 11 × (16 + 128)
#       steps × 64 / 3200 ≈ 32 s; ≈ 110 s with process starts.
#   (b) one image through all three nets costs 1/380 + 1/315 + 1/214 ≈ 0.0105 s, so one step at
#       batch 64 and one at 128 of each net ≈ 192 × 0.0105 ≈ 2.0 s. necrosis: 2 activations ×
#       on/off × 16 steps = 64 → 129 s; PyTorch: 2 × (2 + 16) = 36 → 72 s; ≈ 215 s with 12 starts.
#   (c) per activation 2 × 8192 training images (≈ 3.3 s necrosis, 5.1 s PyTorch) plus 3 test
#       evaluations and 3 probes of 2048 forward passes (≈ 1 s): ≈ 25 s for both activations.
#   A round ≈ 350 s; 5 rounds ≈ 29 min, plus the build (nothing when built; a few minutes cold).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
python=${PYTHON:-python3}
threads=${BENCH_THREADS:-2}
quick=${BENCH_QUICK:-0}
activations=relu,softplus,softsign,relu-softplus,relu-softsign,leaky-relu,elu,tanh,sigmoid,gelu,swish
pair=relu,relu-softsign
if [ "$quick" = 1 ]; then
  # bench_train's fewest steps is 8 (it drops the first eighth as warm-up).
  lenet_steps=8 big_steps=8 warmup=1 samples=1024 run_samples=256 run_epochs=1
else
  # See the arithmetic above; the big nets' median is over 14 steps a round (16 less the warm-up).
  lenet_steps=128 big_steps=16 warmup=16 samples=2048 run_samples=8192 run_epochs=2
fi
big_warmup=2

"$python" -c "import torch" || { echo "no torch for $python (set PYTHON)" >&2; exit 1; }
cargo build --release --quiet --example bench_train
bench=${CARGO_TARGET_DIR:-target}/release/examples/bench_train
log=$(mktemp)
trap 'rm -f "$log"' EXIT

torch_steps() { # arch size channels batch activations steps warmup
  "$python" scripts/bench_pytorch.py --threads "$threads" --arch "$1" --image-size "$2" \
    --channels "$3" --batch "$4" --activation "$5" --steps "$6" --warmup "$7"
}
ours_steps() { # arch size channels batch activations steps parts
  "$bench" --threads "$threads" --arch "$1" --image-size "$2" --channels "$3" --batch "$4" \
    --activations "$5" --steps "$6" --parts "$7" --samples "$samples"
}
# One case, both sides, PyTorch first in odd rounds and necrosis first in even ones.
both() { # round "pytorch command" "necrosis command"
  if [ $(($1 % 2)) = 1 ]; then eval "$2"; eval "$3"; else eval "$3"; eval "$2"; fi 2>&1 | tee -a "$log"
}

for r in $(seq 1 "$rounds"); do
  echo "## round $r of $rounds" | tee -a "$log"
  both "$r" "torch_steps lenet 28 1 64 $activations $lenet_steps $warmup" \
    "ours_steps lenet 28 1 64 $activations $lenet_steps on-off,versus"
  for arch in cifar cifar-bn resnet20; do
    for batch in 64 128; do
      both "$r" "torch_steps $arch 32 3 $batch $pair $big_steps $big_warmup" \
        "ours_steps $arch 32 3 $batch $pair $big_steps on-off"
    done
  done
  both "$r" "\"$python\" scripts/bench_pytorch.py --threads $threads --whole-run --activation $pair --samples $run_samples --epochs $run_epochs --probe 2048" \
    "\"$bench\" --threads $threads --parts phases --activations $pair --samples $run_samples --epochs $run_epochs"
done

command="scripts/bench_compare.sh $rounds"
[ "$quick" = 1 ] && command="BENCH_QUICK=1 $command"
[ "$threads" != 2 ] && command="BENCH_THREADS=$threads $command"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || true)
torch_version=$("$python" -c "import torch; print(torch.__version__)")
"$python" - "$log" "$command" "$rounds" "$threads" "$cpu" "$(nproc)" "$torch_version" \
  "$run_samples" "$run_epochs" "$activations" <<'PY'
# Folds the log into one Markdown table: per case the median over rounds and [min–max], and the
# ratios to PyTorch paired by round (a round runs both sides of a case back to back, so each
# round's ratio compares them on the same machine load; the load moves between rounds).
import re, statistics, sys
log, command, rounds, threads, cpu, cores, torch_version, run_samples, run_epochs = sys.argv[1:10]
seen = {}  # (arch, batch, activation, kind) -> {round: value}
arch = batch = None
round_ = 0
def add(key, value):
    seen.setdefault(key, {})[round_] = float(value)
for line in open(log):
    line = line.rstrip("\n")
    # necrosis' header names the net and batch its lines below belong to.
    if m := re.match(r"## round (\d+) of", line):
        round_ = int(m.group(1))
    elif m := re.match(r"# (\S+) \(\d+ parameters.*, batch (\d+),", line):
        arch, batch = m.group(1), int(m.group(2))
    elif m := re.match(r"pytorch (\S+) (\S+) b(\d+): ([0-9.]+) img/s", line):
        add((m.group(2), int(m.group(3)), m.group(1), "pytorch"), m.group(4))
    elif m := re.match(r"pytorch (\S+) (\S+) whole-run: ([0-9.]+) img/s", line):
        add((m.group(2), "whole", m.group(1), "pytorch"), m.group(3))
    elif m := re.match(r"(\S+) instruments=(on|off): ([0-9.]+) img/s", line):
        add((arch, batch, m.group(1), m.group(2)), m.group(3))
    elif m := re.match(r"(\S+) step vs relu \(.*\): ([-+0-9.]+) %", line):
        add((arch, batch, m.group(1), "versus"), m.group(2))
    elif m := re.match(r"(\S+) whole-run: ([0-9.]+) img/s", line):
        add((arch, "whole", m.group(1), "on"), m.group(2))

def summary(values, fmt):
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))}–{fmt.format(max(values))}]"

def spread(key, fmt="{:.0f}"):
    return summary(list(seen.get(key, {}).values()), fmt)

def paired(ours_key, torch_key):
    """Each round's necrosis ÷ PyTorch for a case, summarised over the rounds."""
    ours, torch_ = seen.get(ours_key, {}), seen.get(torch_key, {})
    return summary([ours[r] / torch_[r] for r in sorted(ours) if torch_.get(r)], "{:.2f}×")

# Rows: nets in preset order, step cases by batch then the whole run, activations in the
# built-ins' order (relu first, the reference of "step vs relu").
order = lambda names, name: names.index(name) if name in names else len(names)
nets = ["lenet", "cifar", "cifar-bn", "resnet20"]
acts = sys.argv[10].split(",")
cases = sorted({k[:3] for k in seen}, key=lambda k: (
    order(nets, k[0]), k[1] == "whole", 0 if k[1] == "whole" else k[1], order(acts, k[2])))
print()
print(f"necrosis against PyTorch {torch_version} on the CPU, {threads} threads, {cpu} ({cores} cores); "
      f"median over {rounds} rounds [min–max]; img/s is the batch over the median step time, or for a "
      f"whole run ({run_samples} synthetic samples, {run_epochs} epochs, batch 64) the training images "
      f"over its wall time, epoch-0 probe, evaluations, probes, records and checkpoints included; "
      f"the ratios are each round's necrosis ÷ PyTorch (the two run back to back), median [min–max].")
print()
print("| net | batch | activation | necrosis img/s, instruments on | instruments off | PyTorch img/s | on ÷ PyTorch, by round | off ÷ PyTorch, by round | step vs relu (necrosis) |")
print("|---|---|---|---|---|---|---|---|---|")
for arch, batch, act in cases:
    case = (arch, batch, act)
    on, off, torch_ = (spread(case + (kind,)) for kind in ("on", "off", "pytorch"))
    on_ratio, off_ratio = (paired(case + (kind,), case + ("pytorch",)) for kind in ("on", "off"))
    versus = spread(case + ("versus",), "{:+.1f} %")
    if arch == "lenet" and batch != "whole" and act == "relu":
        versus = "0 (reference)"
    net = f"{arch}, whole run" if batch == "whole" else arch
    shown_batch = 64 if batch == "whole" else batch
    print(f"| {net} | {shown_batch} | {act} | {on} | {off} | {torch_} | {on_ratio} | {off_ratio} | {versus} |")
print()
print(f"Produced by: {command}")
PY
