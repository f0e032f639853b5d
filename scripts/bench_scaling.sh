#!/usr/bin/env bash
# How necrosis' cost grows (issue #15, "How cost grows"), in one session, as the Markdown tables
# the README's speed section shows:
#   1. LeNet training throughput (relu, instruments on and off, interleaved) for batch 16, 64 and
#      256 on 1 and 2 threads;
#   2. the probe pass's cost against the probe size (512 to 8192 samples; 2 threads);
#   3. the analysis' time and peak memory against the neuron-rows it reads (about 10^5, 10^6 and
#      10^7; bench_analyze generates the runs first, which is not timed);
#   4. where a LeNet step's time goes, phase by phase (bench_train --parts profile), for relu and
#      softplus.
# Usage: scripts/bench_scaling.sh   (about 10 minutes on 2 cores; CARGO_TARGET_DIR as cargo reads
# it). Each number is one measurement: the ratios within a table, not the absolute values, are
# what a shared machine keeps.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --workspace --examples
ex="${CARGO_TARGET_DIR:-target}/release/examples"
num() { grep -oP "$1" | head -1; }

echo "## training throughput (LeNet, relu, img/s; instruments on / off)"
echo
echo "| batch | 1 thread | 2 threads |"
echo "|---|---|---|"
for batch in 16 64 256; do
  row="| $batch |"
  for threads in 1 2; do
    # 8192 samples hold 32 batches of 256; 96 steps per copy cycle through them three times.
    out=$("$ex/bench_train" --parts on-off --batch "$batch" --threads "$threads" --steps 96 \
      --samples 8192 --activations relu)
    on=$(num 'relu instruments=on: \K[0-9.]+' <<<"$out")
    off=$(num 'relu instruments=off: \K[0-9.]+' <<<"$out")
    row="$row $on / $off |"
  done
  echo "$row"
done

echo
echo "## probe pass against probe size (LeNet, relu, 2 threads, one 1-epoch run each)"
echo
echo "| probe samples | probe pass, s | share of a 60 000-image MNIST epoch |"
echo "|---|---|---|"
for probe in 512 2048 8192; do
  out=$("$ex/bench_train" --parts phases --probe-size "$probe" --samples 8192 --epochs 1 \
    --activations relu)
  seconds=$(num "probe pass \\($probe samples\\) \\K[0-9.]+" <<<"$out")
  share=$(num '% of this [0-9]+-sample epoch, \K[0-9.]+(?= % of a 60000)' <<<"$out")
  echo "| $probe | $seconds | $share % |"
done

echo
echo "## analysis against neuron-rows (measures and statistics; the whole report)"
echo
echo "| neuron-rows | analyse, s | peak RSS | whole report, s | peak RSS |"
echo "|---|---|---|---|---|"
for args in "--seeds 2 --width 1" "--seeds 20 --width 1" "--seeds 20 --width 11"; do
  # shellcheck disable=SC2086
  out=$("$ex/bench_analyze" $args --report 2>/dev/null)
  rows=$(num 'runs, \K[0-9]+(?= neuron-rows)' <<<"$out")
  analyse=$(num 'neuron-rows: \K[0-9.]+' <<<"$out")
  rss=$(grep '^analyze' <<<"$out" | num 'peak RSS \K[0-9.]+ MB')
  report=$(num 'tables\): \K[0-9.]+' <<<"$out")
  report_rss=$(grep '^report of' <<<"$out" | num 'peak RSS \K[0-9.]+ MB')
  echo "| $rows | $analyse | $rss | $report | $report_rss |"
done

echo
echo "## where a step's time goes (LeNet, batch 64, 2 threads, instruments on; ms per step, share)"
echo
out=$("$ex/bench_train" --parts profile --steps 256 --samples 8192 --activations relu,softplus)
grep -E '^(relu|softplus) profile: mean step' <<<"$out" | sed 's/^/- /'
echo
echo "| phase | relu | softplus |"
echo "|---|---|---|"
# Phase lines read "<activation> profile:   <phase>   <ms> ms   <share> %"; joined on the phase.
awk '
  / profile:   / {
    act = $1; line = $0; sub(/^[^:]*: +/, "", line)
    n = split(line, f, / +/); share = f[n - 1]; ms = f[n - 3]
    phase = line; sub(/ +[-0-9.]+ ms +[-0-9.]+ %$/, "", phase)
    if (!(phase in seen)) { seen[phase] = 1; order[++count] = phase }
    cell[act, phase] = sprintf("%.2f ms (%s %%)", ms, share)
  }
  END { for (i = 1; i <= count; i++) printf "| %s | %s | %s |\n", order[i], cell["relu", order[i]], cell["softplus", order[i]] }
' <<<"$out"
echo
echo "Produced by: scripts/bench_scaling.sh on $(nproc) cores, $(date -u +%Y-%m-%d)"
