#!/usr/bin/env bash
# The project's test command: static checks, then every test tier (unit, kmock, real runc/CRIU as
# root, real Kubernetes built by hack/k8s/build.sh), and the e2e scenarios twice: on the local cluster
# and, beside all the rest, on a real API server (../shared/k8s/apiserver). Arguments: pytest runs what
# they name instead of every tier (the e2e scenarios on a real API server still run beside it).
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
# The e2e scenarios on a real API server run beside the rest (in the background, their output printed at
# the end): they mostly wait on jobs, their agents take ports the kernel picks, their workdirs differ.
front() {  # the tiers the arguments name; without: every tier but e2e, then e2e on the local cluster
  if (( $# )); then step "pytest: $*"; python -m pytest -ra "$@"; return; fi
  local rc=0
  step "pytest: every tier but e2e"; python -m pytest -ra --ignore=tests/e2e || rc=$?
  step "pytest: e2e scenarios on the local cluster"; env -u MOSIX_E2E_KUBECONFIG python -m pytest -ra tests/e2e || rc=$?
  return "$rc"
}
kube=""
with_kube_e2e() {  # front "$@", the e2e scenarios on the API server of kubeconfig $1 beside it (scratch: $2)
  local kubeconfig=$1 scratch=$2 front_rc=0 kube_rc=0; shift 2
  step "pytest: e2e scenarios on a real Kubernetes API server, started beside what follows"
  MOSIX_E2E_KUBECONFIG=$kubeconfig python -m pytest -ra --basetemp="$scratch/pytest" tests/e2e \
    >"$scratch/kube-e2e.log" 2>&1 & kube=$!
  front "$@" || front_rc=$?
  wait "$kube" || kube_rc=$?; kube=""
  step "pytest: e2e scenarios on a real Kubernetes API server (ran beside the above)"; cat "$scratch/kube-e2e.log"
  (( front_rc == 0 && kube_rc == 0 ))
}
stop_kube_e2e() { [[ -z $kube ]] || { kill "$kube" 2>/dev/null; wait "$kube" 2>/dev/null; } || true; }

if [[ -n ${MOSIX_E2E_KUBECONFIG:-} ]]; then
  scratch=$(mktemp -d /tmp/mosix-e2e-kube.XXXXXX)
  trap 'stop_kube_e2e; rm -rf "$scratch"' EXIT
  with_kube_e2e "$MOSIX_E2E_KUBECONFIG" "$scratch" "$@"
elif [[ -x $shared/k8s/apiserver ]]; then
  kube_bin=$(hack/k8s/build.sh)
  dir=$(mktemp -d /tmp/mosix-e2e-apiserver.XXXXXX)
  trap 'stop_kube_e2e; KUBE_BIN=$kube_bin "$shared/k8s/apiserver" down "$dir" >/dev/null || true; rm -rf "$dir"' EXIT
  KUBE_BIN=$kube_bin API_PORT=18443 ETCD_PORT=18379 ETCD_PEER_PORT=18380 "$shared/k8s/apiserver" up "$dir"
  PATH=$kube_bin:$PATH with_kube_e2e "$dir/kubeconfig" "$dir" "$@"
elif [[ -n ${CI:-} ]]; then
  echo "no real API server: $shared/k8s/apiserver is missing (set MOSIX_SHARED or MOSIX_E2E_KUBECONFIG)" >&2
  exit 1
else
  front "$@"
  echo "skipped: no $shared/k8s/apiserver and no MOSIX_E2E_KUBECONFIG to run the e2e scenarios on a real API server"
fi
