#!/usr/bin/env bash
# Builds the test app in the current directory (its app.py) into app.wasm
# for the world WORLD of the Spin Python SDK, with componentize-py and the
# SDK both pinned, in a virtualenv local to the app (made on the first run).
# Usage, from an app's own build.sh: ../componentize-py.sh WORLD
set -euo pipefail
WORLD="$1"

SPIN_SDK_VERSION=5.0.0
COMPONENTIZE_PY_VERSION=0.25.1

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check \
    "spin-sdk==${SPIN_SDK_VERSION}" "componentize-py==${COMPONENTIZE_PY_VERSION}"

# componentize-py looks for packages in $VIRTUAL_ENV's site-packages (else in
# those of whichever `python3` is on PATH), so point it at the local venv.
export VIRTUAL_ENV="$PWD/.venv"
.venv/bin/componentize-py -w "$WORLD" componentize app -o app.wasm
