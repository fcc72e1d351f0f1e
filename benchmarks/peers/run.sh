#!/usr/bin/env bash
# Side-by-side benchmark: our shipped ensemble vs fer, face-api and Human on the same inputs.
#   bash benchmarks/peers/run.sh [FERPLUS_DIR] [FACES_DIR] [CKPLUS48_DIR] [--taiwan TAIWAN_POSED_DIR]
# Installs the peers in their own environments (benchmarks/peers/.envs, node/node_modules), never
# in the project's; writes results/report.md and results/peers.png. Run it on a quiet machine:
# one-thread figures are pinned to one core with taskset, two-thread figures to two.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
taiwan="${TAIWAN_DIR:-$root/../shared/data/taiwan-posed}"
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --taiwan) taiwan="$2"; shift 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
set -- ${positional[@]+"${positional[@]}"}
data="${1:-${FERPLUS_DIR:-$root/../shared/data/ferplus}}"
faces="${2:-$root/../shared/data/faces}"
ckplus48="${3:-${CKPLUS48_DIR:-$root/../shared/data/ckplus48}}"
# the shared inputs hold FER+ test images: keep them out of the work tree
work="${PEERS_WORK:-${TMPDIR:-/tmp}/fer-ensemble-peers}"
mkdir -p "$here/results"

if [ ! -x "$root/.venv/bin/python" ]; then python3 -m venv "$root/.venv"; fi
"$root/.venv/bin/python" -c "import fer_ensemble, matplotlib" 2>/dev/null \
  || "$root/.venv/bin/pip" install -q -e "$root" matplotlib
bash "$here/install.sh"

rm -rf "$work/results"
rm -rf "$work/ckplus48/results" "$work/taiwan/results"
"$root/.venv/bin/python" "$here/prepare.py" --data "$data" --faces "$faces" --work "$work" --ckplus48 "$ckplus48" \
  --taiwan "$taiwan"
cd "$here"
for threads in 1 2; do
  cpus=$([ "$threads" = 1 ] && echo 0 || echo 0,1)
  taskset -c "$cpus" "$root/.venv/bin/python" run_ours.py --work "$work" --threads "$threads"
  TF_CPP_MIN_LOG_LEVEL=2 taskset -c "$cpus" .envs/fer/bin/python run_fer.py --work "$work" --threads "$threads" 2>&1 \
    | grep -v "XNNPACK" || true
done
taskset -c 0 node node/run.js "$work"  # tfjs-wasm runs one thread in Node
# CK+48's posed faces: accuracy only (the speed figures above are the FER+ ones)
"$root/.venv/bin/python" run_ours.py --work "$work/ckplus48" --accuracy-only
TF_CPP_MIN_LOG_LEVEL=2 .envs/fer/bin/python run_fer.py --work "$work/ckplus48" --accuracy-only 2>&1 | grep -v "XNNPACK" || true
node node/run.js "$work/ckplus48" --accuracy-only
# taiwan-posed's whole photos: accuracy only, each end to end and each classifier on our detector's boxes
"$root/.venv/bin/python" run_ours.py --work "$work/taiwan" --accuracy-only
TF_CPP_MIN_LOG_LEVEL=2 .envs/fer/bin/python run_fer.py --work "$work/taiwan" --accuracy-only 2>&1 | grep -v "XNNPACK" || true
node node/run.js "$work/taiwan" --accuracy-only
"$root/.venv/bin/python" report.py --work "$work" --plot results/peers.png
cp "$work/report.md" results/report.md
