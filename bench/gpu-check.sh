#!/usr/bin/env bash
# The GPU check of edge-infer (issue 22), carried to a GPU machine that has no
# network and takes at most 64 MiB of files per call (docs/gpu.md has the plan).
#
#   bench/gpu-check.sh fetch         here, with internet: the onnxruntime-gpu wheel ($ORT_VERSION, CPython
#                                    $EI_PYVER, default 3.12) re-stored uncompressed and xz -9 (once, cached),
#                                    the edge-infer wheel of the checkout, tarred and cut into
#                                    .gpu-pieces/ei-gpu.tar.IofK + SHA256SUMS; prints the device calls to make
#   bench/gpu-check.sh stash         there, calls 1..k-1: copy the carried piece to $EI_STASH (/tmp/ei-pieces)
#   bench/gpu-check.sh run [OUT]     there, the last call: stash, check, join, install into $EI_SITE with
#                                    pip --target (PYTHONPATH shadows the system's CPU onnxruntime), then check
#   bench/gpu-check.sh check [OUT]   the measurements alone, with whatever edge-infer `$EI_PYTHON` imports
#
# check, within $EI_BUDGET_S (360 s), everything into OUT ($OUT if set, else ./gpu-check-out): log.txt,
# results.json, bench-$EI_PROVIDER.json, summary.md. EI_CUDA_LIBS=system puts the NVIDIA pip libraries of
# $EI_PYTHON's own site-packages on LD_LIBRARY_PATH. Dry run without a GPU (docs/gpu.md):
#   EI_PROVIDER=cpu EI_MAPS=20000 EI_PARITY_MAPS=20000 EI_BATCHES=1,1024 EI_THREADS=1,2 EI_SECONDS=0.3 bench/gpu-check.sh check /tmp/dry
set -uo pipefail

ORT_VERSION=1.31.1  # PyPI's onnxruntime-gpu; its CUDA provider needs libcublas.so.13 / libcudart.so.13 (CUDA 13)
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${EI_PYTHON:-python3}
pieces=${EI_PIECES:-$repo/.gpu-pieces}
stash_dir=${EI_STASH:-/tmp/ei-pieces}
site=${EI_SITE:-/tmp/ei-site}
tools=$repo/bench
temps=()  # scratch folders, removed when the shell that made them exits
scratch() { scratch=$(mktemp -d "${EI_WORK:-/tmp}/ei-$1.XXXX") && temps+=("$scratch"); }  # removed at exit
verb=${1:-}
[[ $# -gt 0 ]] && shift

fetch() {
  local pyver=${EI_PYVER:-3.12} cache=${EI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-infer-gpu} tmp ortxz
  local repo_mib max_mib k i
  git -C "$repo" check-ignore -q "$pieces/x" 2>/dev/null || [[ ${EI_PIECES:-} ]] ||
    { echo "error: $pieces is not ignored by git, so every piece would travel in every call"; return 1; }
  scratch fetch && tmp=$scratch || return 1
  mkdir -p "$tmp/dl" "$tmp/payload" "$cache"
  # onnxruntime-gpu, deflate taken out (the wheel stays a valid wheel) so xz -9 sees the bytes: once, then cached
  ortxz=$(ls "$cache"/onnxruntime_gpu-"$ORT_VERSION"-cp"${pyver/./}"-*.whl.xz 2>/dev/null | head -1)
  if [[ -z $ortxz ]]; then
    local plats=()
    for n in 17 27 28; do plats+=(--platform "manylinux_2_${n}_x86_64"); done
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
      "${plats[@]}" -d "$tmp/dl" "onnxruntime-gpu==$ORT_VERSION" || return 1
    local w
    w=$(ls "$tmp"/dl/onnxruntime_gpu-*.whl) && ortxz=$cache/$(basename "$w").xz
    "$py" "$tools/gpu_pieces.py" store "$w" "$tmp/stored.whl" || return 1
    echo "xz -${EI_XZ_LEVEL:-9} of $(du -m "$tmp/stored.whl" | cut -f1) MiB (minutes on 2 cores; cached in $cache) ..."
    xz "-${EI_XZ_LEVEL:-9}" -T0 -c "$tmp/stored.whl" >"$ortxz.part" && mv "$ortxz.part" "$ortxz" || return 1
  fi
  cp "$ortxz" "$tmp/payload/" || return 1
  "$py" -m pip wheel -q --no-deps "$repo" -w "$tmp/payload" || return 1  # the checkout as it is now
  tar -C "$tmp/payload" -cf "$tmp/ei-gpu.tar" . || return 1
  ls -l "$tmp/payload"
  # Each call carries the repository (what git does not ignore) beside one piece: 64 MiB in all, 2 MiB spare.
  repo_mib=$(cd "$repo" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null |
    tail -1 | awk '{printf "%.1f", $1 / 1048576}')
  max_mib=$(awk -v r="$repo_mib" -v m="${EI_PIECE_MIB:-52}" 'BEGIN { x = 62 - r; print (x < m ? x : m) }')
  "$py" "$tools/gpu_pieces.py" split "$tmp/ei-gpu.tar" "$pieces" --max-mib "$max_mib" || return 1
  "$py" "$tools/gpu_pieces.py" join "$pieces" "$tmp/rejoined" && cmp "$tmp/rejoined" "$tmp/ei-gpu.tar" || return 1
  k=$(ls "$pieces" | grep -c '\.[0-9]*of[0-9]*$')
  echo
  echo "Repository ${repo_mib} MiB per call. The device calls, one straight after the other (the machine stays"
  echo "warm 30 s), from the checkout that holds ${pieces#"$repo"/}/ (the one the session was started in):"
  for i in $(seq 1 "$k"); do
    local cmd="bash bench/gpu-check.sh stash" tmo=60
    [[ $i == "$k" ]] && cmd="EI_CUDA_LIBS=system bash bench/gpu-check.sh run" tmo=480
    echo "  call $i: command: $cmd"
    echo "          carry: [\"${pieces#"$repo"/}/SHA256SUMS\", \"${pieces#"$repo"/}/ei-gpu.tar.${i}of${k}\"]  timeout_s: $tmo"
  done
}

stash() {
  "$py" "$tools/gpu_pieces.py" stash "$pieces" "$stash_dir" || return 1
  command -v nvidia-smi >/dev/null && nvidia-smi -L  # a first look at the card, free
  return 0
}

install() {  # the last call: every piece there? then join, unpack, pip install --target
  stash || return 1
  local tmp
  scratch install && tmp=$scratch || return 1
  "$py" "$tools/gpu_pieces.py" join "$stash_dir" "$tmp/ei-gpu.tar" || return 1
  mkdir -p "$tmp/wheels" && tar -C "$tmp/wheels" -xf "$tmp/ei-gpu.tar" && rm "$tmp/ei-gpu.tar" || return 1
  xz -d -T0 "$tmp"/wheels/*.whl.xz || return 1
  rm -rf "$site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$tmp"/wheels/*.whl ||
    return 1
  echo "installed into $site: $(ls "$tmp/wheels" | tr '\n' ' ')"
  rm -rf "$tmp"
}

cuda_libs() {  # the lib folders of $py's NVIDIA pip packages (nvidia/cu13/lib, nvidia/cudnn/lib, ...)
  "$py" -c '
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = [d for root in nvidia.__path__ for d in sorted(glob.glob(f"{root}/*/lib") + glob.glob(f"{root}/*/*/lib"))
        if glob.glob(f"{d}/lib*.so*")]
print(":".join(dirs))'
}

check() {
  local prov=${EI_PROVIDER:-cuda} maps=${EI_MAPS:-1000000} pmaps=${EI_PARITY_MAPS:-65536}
  local batches=${EI_BATCHES:-1,1024,65536} threads=${EI_THREADS:-1,4,16} secs=${EI_SECONDS:-1}
  local model=${EI_MODEL_DIR:-$repo/models/wafer-cae} t0 deadline work
  t0=$(date +%s) deadline=$(( t0 + ${EI_BUDGET_S:-360} ))
  scratch work && work=$scratch || return 1
  cd "$work" || return 1  # the installed edge-infer, not the checkout's
  step() { echo; echo "== $* (+$(( $(date +%s) - t0 )) s)"; }
  left() { local r=$(( deadline - $(date +%s) )); (( r > ${1:-10} )) && echo "$r"; }
  run_for() {  # run_for SECONDS CMD...: at most SECONDS and never past the deadline
    local r; r=$(left) || { echo "skipped: the ${EI_BUDGET_S:-360} s budget is spent"; return 1; }
    timeout $(( r < $1 ? r : $1 )) "${@:2}"
  }
  local gc=("$py" "$tools/gpu_check.py")

  step "machine"
  command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
  "${gc[@]}" machine "$out"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  local capi
  capi=$("$py" -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__) + "/capi")')
  [[ -f $capi/libonnxruntime_providers_cuda.so ]] &&
    { echo "libraries the CUDA provider cannot find (none is good):"; ldd "$capi/libonnxruntime_providers_cuda.so" | grep "not found"; }
  local d
  for d in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do ls "$d"/libcudnn.so.9 "$d"/libcudart.so.13 2>/dev/null; done
  df -h "$work" | tail -1
  edge-infer info

  step "node placement under $prov: nodes per provider, nodes left on the CPU, copies"
  run_for 90 "${gc[@]}" placement "$out" "$model" --provider "$prov"

  step "parity: $prov against the CPU provider, $pmaps maps, seed 0"
  run_for 120 "${gc[@]}" parity "$out" --provider "$prov" -n "$pmaps"

  step "edge-infer bench --provider $prov --batches $batches --io-binding both"
  run_for 150 edge-infer bench --provider "$prov" --batches "$batches" --io-binding both --seconds "$secs" \
    --out "$out/bench-$prov.json" --force

  step "$maps maps to disk on $prov and on the CPU, compared"
  local p
  for p in $(printf '%s\n' "$prov" cpu | uniq); do
    run_for 120 "${gc[@]}" timed "$out" "million_$p" -- edge-infer generate --class None -n "$maps" --seed 0 \
      --provider "$p" --quiet --out "big-$p"
  done
  [[ $prov != cpu ]] && run_for 60 "${gc[@]}" compare "$out" "same_million_$prov" "big-$prov/gen_data.npy" big-cpu/gen_data.npy
  rm -rf big-*

  step "CPU provider scaling: threads $threads"
  local t
  for t in ${threads//,/ }; do
    run_for 60 edge-infer bench --provider cpu --threads "$t" --batches 1,1024 --tasks decode,generate \
      --seconds "$secs" --out "cpu-$t.json" --force && "${gc[@]}" absorb "$out" "cpu_threads_$t" "cpu-$t.json"
  done

  step "done in $(( $(date +%s) - t0 )) s"
  "${gc[@]}" summary "$out" >/dev/null
  echo "in $out: $(ls "$out" | tr '\n' ' ')"
}

use_install() {  # the pip --target install first on the import path, and the NVIDIA libraries it needs
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} PATH=$site/bin:$PATH
  [[ ${EI_CUDA_LIBS:-} == system ]] || return 0
  local libs
  libs=$(PYTHONPATH= cuda_libs)
  [[ -n $libs ]] || { echo "error: EI_CUDA_LIBS=system, but $py has no NVIDIA pip libraries"; return 1; }
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
}

main() {
  trap 'rm -rf "${temps[@]}"' EXIT
  case $verb in
    fetch) fetch ;;
    stash) stash ;;
    run) install && use_install && check ;;
    check) check ;;
  esac
}

case $verb in
  fetch | stash) main ;;
  run | check)  # everything into OUT; log.txt through a pipe the script waits for, so no line is lost
    out=$(mkdir -p "${1:-${OUT:-gpu-check-out}}" && cd "${1:-${OUT:-gpu-check-out}}" && pwd) || exit 1
    rm -f "$out/results.json" "$out/summary.md"
    main 2>&1 | tee "$out/log.txt"
    exit "${PIPESTATUS[0]}" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
