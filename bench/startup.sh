#!/usr/bin/env bash
# Median wall time of a command over RUNS runs (for the README's startup figures).
#   bench/startup.sh 21 .venv/bin/edge-infer --help
#   bench/startup.sh 21 .venv/bin/edge-infer generate --class None -n 5 --out /tmp/s --force
set -euo pipefail
runs=$1; shift
for _ in $(seq "$runs"); do
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N)
  echo "$end - $start" | bc
done | sort -n | awk '{t[NR]=$1} END {printf "median %.3f s  min %.3f  max %.3f  runs %d\n", t[int((NR+1)/2)], t[1], t[NR], NR}'
