#!/usr/bin/env bash
# Set up a fresh machine for the mesh: system packages, the virtual environment,
# the project with every extra, and the web UI bundle. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
if [ "${DFMESH_SETUP_TEST_DEPS:-0}" = "1" ]; then
  command -v redis-server >/dev/null || need_apt+=(redis-server)
  command -v chromium >/dev/null || need_apt+=(chromium chromium-driver)
  # promtool checks and unit-tests the alert rules (tests/observability/test_alerts.py).
  command -v promtool >/dev/null || need_apt+=(prometheus)
fi
# Optional, for training only (DFMESH_SETUP_TRAIN_DEPS=1): the TTS engines that speak the audio
# model's pseudo-spoofs (training/fakes/speech.py skips its TTS recipes without them).
if [ "${DFMESH_SETUP_TRAIN_DEPS:-0}" = "1" ]; then
  command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
  command -v flite >/dev/null || need_apt+=(flite)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade "pip==25.3"
# torch first, from this machine's local wheels when present (pip honours its constraints).
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/pip install -q -e ".[ingest,branch,fusion,gateway,train,dev]"
# facenet-pytorch 2.6.0 pins an old torch and numpy; it works with ours, so skip its deps.
.venv/bin/pip install -q --no-deps "facenet-pytorch==2.6.0"
# Compile librosa's cached numba kernels now, before services and tests race to do it.
.venv/bin/python scripts/warm_numba_cache.py

if [ -f web/package.json ]; then
  if ! command -v npm >/dev/null; then
    echo "error: npm (Node.js 20+) is needed to build the web UI in web/; install nodejs and npm" >&2
    exit 1
  fi
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi
echo "setup complete: activate with 'source .venv/bin/activate'"
