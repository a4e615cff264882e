#!/usr/bin/env bash
# Runs bench/txmq_bench, keeps its JSON in bench/results/, and turns it into
# docs/benchmarks.md (table, ratios, machine) and docs/benchmarks.png.
#   bench/run.sh BUILD_DIR [extra Google Benchmark flags...]
# Usually called as: scripts/dev bench
set -euo pipefail
build=${1:?usage: bench/run.sh BUILD_DIR [benchmark flags]}
shift
cd "$(dirname "$0")/.."
out=bench/results/latest.json
"$build/bench/txmq_bench" --benchmark_out="$out" --benchmark_out_format=json \
  --benchmark_repetitions="${TXMQ_BENCH_REPETITIONS:-3}" \
  --benchmark_report_aggregates_only=true "$@"
python3 bench/report.py "$out" docs/benchmarks.md bench/results/chart.dat
gnuplot bench/chart.gp
echo "wrote docs/benchmarks.md and docs/benchmarks.png"
