#!/usr/bin/env bash
# Sourced, not run: base_rootfs ROOT fills ROOT with a busybox rootfs for the images the tests
# build with `docker import` (scripts/test-image.sh, scripts/critest-images.sh). $busybox names
# the static busybox binary (Debian's busybox-static).
# The base rootfs every image shares: busybox with one hard link per applet (runc masks a path
# by bind-mounting /dev/null over it, and a mount follows a symlink onto /bin/busybox itself),
# the users the tests name, a world-writable /tmp, and shell stand-ins for two applets Debian's
# busybox-static lacks.
base_rootfs() {
    local root=$1
    mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root,var/run,var/www,usr/bin,usr/sbin}
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln "$root/bin/busybox" "$root/bin/$applet"
    done
    cat >"$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
PW
    cat >"$root/etc/group" <<'GR'
root:x:0:
www-data:x:33:
nobody:x:65534:
nogroup:x:65534:
GR
    # HostIpc specs run `ipcs -m` and look for a segment id: list the ipc namespace's segments.
    cat >"$root/bin/ipcs" <<'SH'
#!/bin/sh
# Stand-in for util-linux `ipcs -m`: the shared memory segments of this ipc namespace.
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch"
{
    read -r _header
    while read -r key shmid perms size _cpid _lpid nattch uid _rest; do
        echo "$key $shmid $uid $perms $size $nattch"
    done
} </proc/sysvipc/shm
SH
    # The execSync-timeout spec runs `pgrep sleep`: pids whose command name contains $1.
    cat >"$root/bin/pgrep" <<'SH'
#!/bin/sh
# Stand-in for procps `pgrep PATTERN` (substring match on the command name only).
found=1
for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    read -r comm 2>/dev/null <"$dir/comm" || continue
    case "$comm" in
    *"$1"*) echo "$pid"; found=0 ;;
    esac
done
exit $found
SH
    chmod 755 "$root/bin/ipcs" "$root/bin/pgrep"
}
