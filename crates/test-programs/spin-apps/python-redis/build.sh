#!/usr/bin/env bash
# Builds app.wasm with componentize-py and the Spin Python SDK, both pinned
# (as ../python-sdk does), in a virtualenv local to this directory (created
# on the first run).
set -euo pipefail
cd "$(dirname "$0")"

SPIN_SDK_VERSION=5.0.0
COMPONENTIZE_PY_VERSION=0.25.1

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check \
    "spin-sdk==${SPIN_SDK_VERSION}" "componentize-py==${COMPONENTIZE_PY_VERSION}"

# componentize-py looks for packages in $VIRTUAL_ENV's site-packages.
export VIRTUAL_ENV="$PWD/.venv"
# The SDK's own world for a Redis trigger: exports spin:redis/inbound-redis@3.0.0.
.venv/bin/componentize-py -w spin:up/redis-trigger@4.1.0 componentize app -o app.wasm
