#!/usr/bin/env bash
# Build the pod infra image locally: a static pause binary imported with `docker import`.
# No registry is reachable here, so the image the shim expects must exist before any pod runs.
set -euo pipefail
image=${1:-registry.k8s.io/pause:3.10}
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/build/pause"
mkdir -p "$out"
if [ ! -x "$out/pause" ] || [ "$here/pause/pause.c" -nt "$out/pause" ]; then
    gcc -Os -static -s -o "$out/pause" "$here/pause/pause.c"
fi
digest=$(sha256sum "$out/pause" | cut -c1-16)
current=$(/usr/bin/docker image inspect -f '{{index .Config.Labels "io.cri-shim.pause"}}' "$image" 2>/dev/null || true)
if [ "$current" != "$digest" ]; then
    tar -C "$out" -c pause | /usr/bin/docker import \
        --change 'ENTRYPOINT ["/pause"]' --change "LABEL io.cri-shim.pause=$digest" - "$image" >/dev/null
    echo "pause-image: imported $image"
fi
