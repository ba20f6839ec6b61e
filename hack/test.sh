#!/usr/bin/env bash
# The project's test command: static checks, then every test tier (unit, kmock, real runc/CRIU as
# root, real Kubernetes built by hack/k8s/build.sh). Extra arguments go to pytest.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH=$top/.venv/bin:$PATH
step() { printf '\n== %s\n' "$*"; }
step "generated CRDs are current"; python -m mosix.api.crdgen --check
step "ruff"; ruff check .
step "mypy --strict"; mypy
step "import layers"; lint-imports --no-cache
step "pytest"; python -m pytest -ra "$@"
