#!/usr/bin/env bash
# The project's test command: static checks, then every test tier (unit, kmock, real runc/CRIU as
# root, real Kubernetes built by hack/k8s/build.sh), and the e2e scenarios twice: on the local cluster
# and on a real API server (../shared/k8s/apiserver). Arguments: pytest runs what they name instead of
# every tier, then the e2e scenarios on a real API server.
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
# With arguments: one pytest run of what they name, then the e2e scenarios on a real API server.
# Without: every tier but e2e, then the e2e scenarios on the local cluster and on a real API server side
# by side (they mostly wait on jobs; their agents take ports the kernel picks, their workdirs differ).
local_e2e=()
if (( $# )); then
  step "pytest: $*"; python -m pytest -ra "$@"
else
  step "pytest: every tier but e2e"; python -m pytest -ra --ignore=tests/e2e
  local_e2e=(env -u MOSIX_E2E_KUBECONFIG python -m pytest -ra tests/e2e)
fi

kube_e2e() {  # the e2e scenarios against the API server of kubeconfig $1, pytest's temporary files in $2
  MOSIX_E2E_KUBECONFIG=$1 python -m pytest -ra --basetemp="$2" tests/e2e
}
side_by_side() {  # the local e2e pass (if any) in front, kube_e2e "$@" beside it; fails if either fails
  if (( ${#local_e2e[@]} == 0 )); then kube_e2e "$@"; return; fi
  step "pytest: e2e scenarios on the local cluster, and beside it on a real Kubernetes API server"
  kube_e2e "$@" >"$2.log" 2>&1 & local kube=$!
  local local_rc=0 kube_rc=0
  "${local_e2e[@]}" || local_rc=$?
  wait "$kube" || kube_rc=$?
  step "pytest: e2e scenarios on a real Kubernetes API server (run beside the local pass)"; cat "$2.log"
  (( local_rc == 0 && kube_rc == 0 ))
}

if [[ -n ${MOSIX_E2E_KUBECONFIG:-} ]]; then
  tmp=$(mktemp -d /tmp/mosix-e2e-kube.XXXXXX); trap 'rm -rf "$tmp"' EXIT
  side_by_side "$MOSIX_E2E_KUBECONFIG" "$tmp/pytest"
elif [[ -x $shared/k8s/apiserver ]]; then
  kube_bin=$(hack/k8s/build.sh)
  dir=$(mktemp -d /tmp/mosix-e2e-apiserver.XXXXXX)
  trap 'KUBE_BIN=$kube_bin "$shared/k8s/apiserver" down "$dir" >/dev/null || true; rm -rf "$dir"' EXIT
  KUBE_BIN=$kube_bin API_PORT=18443 ETCD_PORT=18379 ETCD_PEER_PORT=18380 "$shared/k8s/apiserver" up "$dir"
  PATH=$kube_bin:$PATH side_by_side "$dir/kubeconfig" "$dir/pytest"
elif [[ -n ${CI:-} ]]; then
  echo "no real API server: $shared/k8s/apiserver is missing (set MOSIX_SHARED or MOSIX_E2E_KUBECONFIG)" >&2
  exit 1
else
  (( ${#local_e2e[@]} == 0 )) || { step "pytest: e2e scenarios on the local cluster"; "${local_e2e[@]}"; }
  echo "skipped: no $shared/k8s/apiserver and no MOSIX_E2E_KUBECONFIG to run the e2e scenarios on a real API server"
fi
