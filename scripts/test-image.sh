#!/usr/bin/env bash
# The image the container tests run: a rootfs of Debian's busybox-static, imported with
# `docker import` (nothing can be pulled here). Every applet is a hard link to /bin/busybox,
# not a symlink: runc masks a path by bind-mounting /dev/null over it, and a mount follows a
# symlink onto /bin/busybox itself. Rebuilt only when busybox or this script changes.
set -euo pipefail
image=${1:-cri-shim.test/busybox:latest}
here=$(cd "$(dirname "$0")/.." && pwd)
busybox=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
stamp=$( (sha256sum "$busybox"; sha256sum "$0" "$(dirname "$0")/busybox-rootfs.sh") | sha256sum | cut -c1-16)
current=$(/usr/bin/docker image inspect -f '{{index .Config.Labels "io.cri-shim.test-image"}}' "$image" 2>/dev/null || true)
[ "$current" = "$stamp" ] && exit 0
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
. "$(dirname "$0")/busybox-rootfs.sh"
base_rootfs "$root"
tar -C "$root" -c . | /usr/bin/docker import \
    --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin:/usr/bin' \
    --change "LABEL io.cri-shim.test-image=$stamp" - "$image" >/dev/null
echo "test-image: imported $image"
