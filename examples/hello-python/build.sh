#!/usr/bin/env bash
# Builds hello.wasm (~18 MB) with componentize-py in a local virtualenv.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/componentize-py ] || {
    python3 -m venv .venv
    .venv/bin/pip install -q componentize-py==0.25.1
}
.venv/bin/componentize-py -d wit -w hello-python componentize app -o hello.wasm
