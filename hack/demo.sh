#!/usr/bin/env bash
# The README's demo on the local cluster (`mosix up`): CPU-bound testload jobs started on node 1
# spread over the nodes as the load balancer migrates them; mosps shows WHERE and NMIGS, and
# `mosix nodes` each node's load. Usage: hack/demo.sh [jobs] [seconds]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$top/.venv/bin:$PATH MOSIX_NODE=${MOSIX_NODE:-node1}
jobs=${1:-6}; seconds=${2:-40}
echo "\$ mosrun testload --cpu 20 &    # $jobs times, from node 1"
for _ in $(seq "$jobs"); do mosrun --detach testload --cpu 20 >/dev/null; done
for elapsed in $(seq 5 5 "$seconds"); do
  sleep 5
  printf '\n--- %s s\n$ mosps -An\n' "$elapsed"; mosps -An
  printf '$ mosix nodes\n'; mosix nodes
done
printf '\n$ moskillall\n'; moskillall
