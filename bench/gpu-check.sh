#!/usr/bin/env bash
# The GPU check of edge-infer (issue 12): install the wheel with the cuda extra
# into a fresh venv on a machine with an NVIDIA GPU and no internet, then
#   1. provider parity with the CPU (die states identical, or how many differ),
#   2. edge-infer bench --provider cuda at batch 1, 1024, 65,536, IO binding on and off,
#   3. a million maps generated to disk on CUDA (wall time, peak memory), and
#      whether they equal the CPU's million maps.
# Everything goes to OUT (default ./gpu-check-out): log.txt, bench-cuda.json, summary.txt.
# Budget: under 8 minutes on a 16-core machine (each step has its own timeout).
#
# Two halves, because the GPU machine cannot reach a package index:
#   bench/gpu-check.sh fetch [PYTHON_VERSION]   # with internet, in the repo root: every wheel
#                                               # edge-infer[cuda] needs, for CPython PYTHON_VERSION
#                                               # (default 3.12) on x86_64 Linux, into .whl/ (~1.5 GB)
#   bench/gpu-check.sh [OUT]                    # on the GPU machine: installs from .whl/ only
#
# Where the wheels cannot all travel (a transfer limit smaller than the CUDA
# libraries), EI_CUDA_LIBS=system skips NVIDIA's library wheels and uses the CUDA
# 13 / cuDNN 9 libraries the machine's own Python already has (nvidia-* packages,
# found with `python3 -c 'import nvidia'`) through LD_LIBRARY_PATH; .whl/ then
# needs only edge-infer, onnxruntime-gpu and the small pure-Python dependencies.
# For a dry run of the script itself on a machine without a GPU:
#   EI_PROVIDER=cpu EI_MAPS=20000 EI_BATCHES=1,1024 EI_WHEELS=/tmp/whl bench/gpu-check.sh /tmp/gpu-check-dry
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
wheels=${EI_WHEELS:-$repo/.whl}
py=${EI_PYTHON:-python3}
prov=${EI_PROVIDER:-cuda}
maps=${EI_MAPS:-1000000}
batches=${EI_BATCHES:-1,1024,65536}

if [[ ${1:-} == fetch ]]; then
  pyver=${2:-3.12}
  mkdir -p "$wheels"
  (cd "$repo" && "$py" -m pip wheel -q --no-deps . -w "$wheels") || exit 1
  whl=$(ls -t "$wheels"/edge_infer-*.whl | head -1)
  plats=()
  for n in 17 24 27 28 31 34 35; do plats+=(--platform "manylinux_2_${n}_x86_64"); done
  "$py" -m pip download -q --only-binary=:all: --python-version "$pyver" --implementation cp \
    "${plats[@]}" --platform manylinux2014_x86_64 -d "$wheels" "$whl[cuda]" || exit 1
  du -sh "$wheels"
  echo "wheels for CPython $pyver in $wheels; copy the repo (with .whl/) to the GPU machine and run bench/gpu-check.sh"
  exit 0
fi

out=$(mkdir -p "${1:-gpu-check-out}" && cd "${1:-gpu-check-out}" && pwd)
log=$out/log.txt
: >"$log"
say() { echo "$*" | tee -a "$log"; }
step() { say ""; say "== $* ($(date -u +%H:%M:%S))"; }
t0=$(date +%s)

step "machine"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log"
else
  say "nvidia-smi: not found (no NVIDIA driver?)"
fi
say "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; python: $("$py" --version 2>&1)"

step "install edge-infer[cuda] from $wheels into a fresh venv (no index)"
venv=$(mktemp -d)/venv
"$py" -m venv "$venv" || exit 1
pip_args=(-q --no-index --find-links "$wheels" --no-cache-dir)
whl=$(ls -t "$wheels"/edge_infer-*.whl 2>/dev/null | head -1)
[[ -n $whl ]] || { say "error: no edge_infer wheel in $wheels (run: bench/gpu-check.sh fetch, where there is internet)"; exit 1; }
start=$(date +%s)
if [[ ${EI_CUDA_LIBS:-wheels} == system ]]; then
  "$venv/bin/pip" install "${pip_args[@]}" "$whl" 2>&1 | tee -a "$log"
  libs=$("$py" -c 'import nvidia, os; r = list(nvidia.__path__)[0]; print(":".join(os.path.join(r, d, "lib") for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, "lib"))))' 2>/dev/null)
  [[ -n $libs ]] || { say "error: EI_CUDA_LIBS=system, but $py has no nvidia-* library packages"; exit 1; }
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  say "CUDA libraries from $py's nvidia packages"
else
  "$venv/bin/pip" install "${pip_args[@]}" "$whl[cuda]" 2>&1 | tee -a "$log"
fi
[[ -x $venv/bin/edge-infer ]] || { say "error: install failed (see above)"; exit 1; }
say "installed in $(( $(date +%s) - start )) s; $(du -sm "$venv" | cut -f1) MB"
"$venv/bin/pip" list 2>/dev/null | grep -i -E "onnxruntime|nvidia|edge-infer" | tee -a "$log"
ei=$venv/bin/edge-infer
epy=$venv/bin/python
cd "$(mktemp -d)" || exit 1  # the installed package, not the checkout

step "edge-infer info (providers listed, which one auto gets)"
"$ei" info 2>&1 | tee -a "$log"
timeout 60 "$ei" generate --class None -n 5 --out auto-run 2>&1 | tee -a "$log"

step "parity: $prov against the CPU provider, 65,536 maps (all classes, seed 0)"
EI_PROVIDER=$prov timeout 120 "$epy" - <<'EOF' 2>&1 | tee -a "$log"
import os
from edge_infer import WaferGenerator
from edge_infer.bench import die_parity
gpu = WaferGenerator.load(provider=os.environ["EI_PROVIDER"])
cpu = WaferGenerator.load(provider="cpu")
print(f"{os.environ['EI_PROVIDER']} session:", gpu.provider_info.describe())
print(die_parity(gpu, cpu, n=65536, seed=0))
EOF

step "edge-infer bench --provider $prov, batch 1, 1024, 65,536, IO binding on and off"
timeout 200 "$ei" bench --provider "$prov" --batches "$batches" --io-binding both --seconds 2 \
  --out "$out/bench-$prov.json" --force 2>&1 | tee -a "$log"

step "$maps maps to disk on $prov, then on the CPU, compared"
for p in $(printf '%s\n' "$prov" cpu | uniq); do
  timeout 150 /usr/bin/time -f "$p: %e s wall, %M kB max resident" "$ei" generate --class None -n "$maps" --seed 0 \
    --provider "$p" --quiet --out "big-$p" 2>&1 | tee -a "$log"
done
EI_PROVIDER=$prov timeout 60 "$epy" - <<'EOF' 2>&1 | tee -a "$log"
import os
import numpy as np
p = os.environ["EI_PROVIDER"]
a = np.load(f"big-{p}/gen_data.npy", mmap_mode="r")
b = np.load("big-cpu/gen_data.npy", mmap_mode="r")
differ = sum(int((a[i:i + 65536] != b[i:i + 65536]).any(axis=(1, 2, 3)).sum()) for i in range(0, len(a), 65536))
print(f"{len(a):,} maps: {differ} differ between {p} and the CPU")
EOF
rm -rf "big-$prov" big-cpu

step "done in $(( $(date +%s) - t0 )) s"
grep -E "NVIDIA|H[0-9]|session:|maps_differ|decode|generate |wall|differ between|installed in" "$log" >"$out/summary.txt"
say "log: $log; bench JSON: $out/bench-$prov.json; summary: $out/summary.txt"
