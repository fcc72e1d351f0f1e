#!/usr/bin/env bash
# The whole test suite from a fresh clone: Debian's Chromium for the browser test, a virtual
# environment with every extra, then pytest. README and .ci/run both call exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q -e ".[train,server,dev]"
.venv/bin/python -m pytest "$@"
