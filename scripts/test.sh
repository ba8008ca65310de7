#!/usr/bin/env bash
# Set up everything the tests need (system packages, venv, web bundle) and run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
DFMESH_SETUP_TEST_DEPS=1 bash scripts/setup.sh
media="${DFMESH_SHARED_DATA:-../shared/data}"
if [ -f "$media/MANIFEST.csv" ]; then
  echo "shared media: $media"
else
  echo "warning: no shared media at $media (set DFMESH_SHARED_DATA): tests that need it will skip" >&2
fi
if [ -x scripts/k8s_check.sh ]; then bash scripts/k8s_check.sh; fi
exec .venv/bin/pytest -q "$@"
