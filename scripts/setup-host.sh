#!/usr/bin/env bash
# Prepare a fresh Debian machine (as root) for cri-shim: the packages it drives, and a running
# Docker engine. Idempotent: installs only what is missing, starts dockerd only when it is down.
set -euo pipefail

# systemd: only its systemd-analyze, which verifies packaging/systemd (nothing runs under it here).
packages=(docker.io containernetworking-plugins iproute2 iptables gcc libc6-dev etcd-server tmux systemd)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's docker.io client lives in /usr/bin; use it, whatever else is on PATH.
docker=/usr/bin/docker
if ! "$docker" info >/dev/null 2>&1; then
    echo "setup: starting dockerd (log: /var/log/cri-shim-dockerd.log)"
    # No init system here: dockerd runs as a background process of its own session, so it
    # outlives this script and the make that called it.
    setsid /usr/sbin/dockerd >/var/log/cri-shim-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        "$docker" info >/dev/null 2>&1 && break
        sleep 0.5
    done
    "$docker" info >/dev/null 2>&1 || { echo "setup: dockerd did not start" >&2; tail -20 /var/log/cri-shim-dockerd.log >&2; exit 1; }
fi
