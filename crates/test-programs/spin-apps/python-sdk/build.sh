#!/usr/bin/env bash
# Builds app.wasm with the Spin Python SDK's own world for an HTTP component,
# spin:up/http-trigger (exports wasi:http/handler).
set -euo pipefail
cd "$(dirname "$0")"
exec ../componentize-py.sh spin:up/http-trigger@4.1.0
