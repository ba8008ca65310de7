#!/usr/bin/env bash
# Set up everything the tests need (system packages, venv, web bundle) and run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
DFMESH_SETUP_TEST_DEPS=1 bash scripts/setup.sh
if [ -x scripts/k8s_check.sh ]; then bash scripts/k8s_check.sh; fi
exec .venv/bin/pytest -q "$@"
