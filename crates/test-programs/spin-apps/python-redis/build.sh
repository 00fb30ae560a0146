#!/usr/bin/env bash
# Builds app.wasm with the Spin Python SDK's own world for a Redis trigger,
# spin:up/redis-trigger (exports spin:redis/inbound-redis@3.0.0).
set -euo pipefail
cd "$(dirname "$0")"
exec ../componentize-py.sh spin:up/redis-trigger@4.1.0
