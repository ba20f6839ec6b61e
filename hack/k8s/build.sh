#!/usr/bin/env bash
# Builds the real Kubernetes that mosix's tests run against, from the Go module proxy:
# static, version-stamped binaries in a cache outside the clone, reused when present.
# Prints the folder of the binaries (use it as KUBE_BIN). Usage: hack/k8s/build.sh [--print-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module=k8s.io/kubernetes
version=$(awk -v m="$module" '$1==m && $2 ~ /^v/ {print $2} $1=="require" && $2==m {print $3}' "$here/go.mod")
[[ -n $version ]] || { echo "hack/k8s/build.sh: no $module version in $here/go.mod" >&2; exit 1; }
cache=${MOSIX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mosix}
out=$cache/k8s/$version/bin
commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

if [[ ${1:-} == --print-dir ]]; then echo "$out"; exit 0; fi

missing=()
for c in "${commands[@]}"; do [[ -x $out/$c ]] || missing+=("$c"); done
if (( ${#missing[@]} == 0 )); then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "hack/k8s/build.sh: go is not installed (needed to build $module $version)" >&2; exit 1; }
mkdir -p "$out"
log=$cache/k8s/$version/build.log
major=${version#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
echo "building ${missing[*]} of $module $version into $out (log: $log)" >&2
start=$SECONDS
pkgs=(); for c in "${missing[@]}"; do pkgs+=("$module/cmd/$c"); done
if ! (cd "$here" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}") >"$log" 2>&1; then
  tail -20 "$log" >&2
  failed=$(grep -oE '(k8s\.io|github\.com|golang\.org|google\.golang\.org|sigs\.k8s\.io|go\.[a-z.]+)/[^ :@]+@v[^ :]+' "$log" | head -1 || true)
  echo "hack/k8s/build.sh: building $module $version failed${failed:+ (module $failed)}; full log in $log" >&2
  exit 1
fi
echo "built in $((SECONDS - start)) s" >&2
echo "$out"
