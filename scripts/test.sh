#!/usr/bin/env bash
# The whole test suite from a fresh clone: Debian's Chromium for the browser test (installed when
# this user may), a virtual environment of its own with every extra (.venv-test: the main
# command's .venv stays light), then pytest. README and .ci/run both call exactly this.
ensure_chromium() {
    command -v chromium >/dev/null && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo -n true 2>/dev/null && sudo="sudo -n"
    if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
        echo "installing Debian's Chromium for the browser test (apt-get)" >&2
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
            && return 0
    fi
    if [ "${CI:-}" = "true" ]; then
        echo "CI: Chromium is required for the browser test and could not be installed" >&2
        return 1
    fi
    echo "Chromium is missing and cannot be installed here (needs apt-get and root or sudo):" \
         "the browser test will be skipped" >&2
}

main() {
    set -euo pipefail
    cd "$(dirname "$0")/.."
    ensure_chromium
    python3 -m venv .venv-test
    .venv-test/bin/pip install -q -e ".[train,server,batch,adapt,heic,dev,docs]"
    .venv-test/bin/python -m pytest "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced (tests source it for ensure_chromium)
    main "$@"
fi
