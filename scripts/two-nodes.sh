#!/usr/bin/env bash
# Two nodes on one machine (README "Two nodes on one machine"): network namespaces for the
# underlay, etcd and two nodes running pyflanneld, one pod per node wired by our CNI plugins.
#   scripts/two-nodes.sh        build it and open a shell in the pod of node 1
#   scripts/two-nodes.sh down   remove everything it made
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ $EUID -eq 0 ]] || { echo "two-nodes.sh needs root (network namespaces)" >&2; exit 1; }

if [[ ${1:-up} == down ]]; then
    exec "$PY" -m tests.overlay.twonodes down
fi

info=$("$PY" -m tests.overlay.twonodes up)
field() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$info" "$1"; }
pod1=$(field pod1)
pod2_ip=$(field pod2_ip)
cat <<MSG
Built: pod $(field pod1) ($(field pod1_ip)) on node 1, pod $(field pod2) ($pod2_ip) on node 2.
Logs and subnet files: $(field workdir)/n1, $(field workdir)/n2.
Opening a shell in the pod of node 1. Try:   ping -c 3 $pod2_ip
When done: exit, then   scripts/two-nodes.sh down
MSG
rc=$(mktemp)
trap 'rm -f "$rc"' EXIT
# busybox ping where the host has busybox; else our probe (the host has no ping).
if command -v busybox >/dev/null; then
    echo 'ping() { busybox ping "$@"; }' >"$rc"
else
    echo "ping() { PYTHONPATH=$PWD $PWD/$PY -m tests.overlay.probe ping \"\${@: -1}\" --count 3; }" >"$rc"
fi
echo "PS1='[$pod1] \\w # '" >>"$rc"
ip netns exec "$pod1" bash --rcfile "$rc" -i || true
