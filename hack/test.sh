#!/usr/bin/env bash
# The project's test command: static checks, then every test tier (unit, kmock, real runc/CRIU as
# root, real Kubernetes built by hack/k8s/build.sh), then the e2e scenarios again on a real API
# server (../shared/k8s/apiserver). Extra arguments go to the first pytest run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH=$top/.venv/bin:$PATH
shared=${MOSIX_SHARED:-$top/../shared}
step() { printf '\n== %s\n' "$*"; }

step "generated CRDs are current"; python -m mosix.api.crdgen --check
step "ruff"; ruff check .
step "mypy --strict"; mypy && for entry in operator/main.py nodeagent/main.py; do [[ ! -f $entry ]] || mypy "$entry"; done
step "import layers"; lint-imports --no-cache
step "pytest: every tier"; python -m pytest -ra "$@"

step "pytest: e2e scenarios on a real Kubernetes API server"
if [[ -n ${MOSIX_E2E_KUBECONFIG:-} ]]; then
  python -m pytest -ra tests/e2e
elif [[ -x $shared/k8s/apiserver ]]; then
  kube_bin=$(hack/k8s/build.sh)
  dir=$(mktemp -d /tmp/mosix-e2e-apiserver.XXXXXX)
  trap 'KUBE_BIN=$kube_bin "$shared/k8s/apiserver" down "$dir" >/dev/null || true; rm -rf "$dir"' EXIT
  KUBE_BIN=$kube_bin API_PORT=18443 ETCD_PORT=18379 ETCD_PEER_PORT=18380 "$shared/k8s/apiserver" up "$dir"
  MOSIX_E2E_KUBECONFIG=$dir/kubeconfig PATH=$kube_bin:$PATH python -m pytest -ra tests/e2e
elif [[ -n ${CI:-} ]]; then
  echo "no real API server: $shared/k8s/apiserver is missing (set MOSIX_SHARED or MOSIX_E2E_KUBECONFIG)" >&2
  exit 1
else
  echo "skipped: no $shared/k8s/apiserver and no MOSIX_E2E_KUBECONFIG to run the e2e scenarios on"
fi
