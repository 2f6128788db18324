#!/usr/bin/env bash
# Start-up of edge-infer against the floor it cannot beat (importing numpy and
# onnxruntime), measured interleaved so both see the same machine load.
#   bench/startup.sh [RUNS] [VENV]        default: 21 runs, .venv
# Each round runs, in this order: python -c "import numpy, onnxruntime",
# edge-infer --help, edge-infer generate --class None -n 5 (into a temp
# folder); prints the median, min and max of each and generate / import.
set -euo pipefail
runs=${1:-21}
venv=$(cd "${2:-.venv}" && pwd)
py="$venv/bin/python"
cli="$venv/bin/edge-infer"
[[ -x $cli ]] || { echo "error: $cli not found (make demo builds .venv)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"  # no checkout on sys.path: the installed package, as a user runs it

wall() {  # seconds one command takes, output discarded
  local start end
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N)
  echo "$end - $start" | bc
}

"$cli" generate --class None -n 5 --out "$work/out" --force >/dev/null 2>&1  # warm the file cache once
for _ in $(seq "$runs"); do
  echo "import $(wall "$py" -c 'import numpy, onnxruntime')"
  echo "help $(wall "$cli" --help)"
  echo "generate $(wall "$cli" generate --class None -n 5 --out "$work/out" --force)"
done >"$work/times"

median() { awk -v k="$1" '$1 == k {print $2}' "$work/times" | sort -n |
  awk '{t[NR]=$1} END {printf "%.3f %.3f %.3f\n", t[int((NR+1)/2)], t[1], t[NR]}'; }
printf '%-40s %8s %8s %8s\n' command "median s" "min" "max"
for k in import help generate; do
  case $k in
    import) label='python -c "import numpy, onnxruntime"' ;;
    help) label='edge-infer --help' ;;
    generate) label='edge-infer generate --class None -n 5' ;;
  esac
  read -r med lo hi < <(median "$k")
  printf '%-40s %8s %8s %8s\n' "$label" "$med" "$lo" "$hi"
done
read -r imp _ _ < <(median import)
read -r gen _ _ < <(median generate)
echo "generate / import (medians, $runs interleaved rounds): $(echo "scale=2; $gen / $imp" | bc)"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
