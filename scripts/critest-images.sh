#!/usr/bin/env bash
# The images critest (tests/critest) pulls, offline: a local registry on 127.0.0.1:5000 serving
# substitutes built from Debian's busybox-static, and the same images seeded in the local Docker
# under both names critest uses (see docs in /work/shared/docs/CRITEST-OFFLINE.md):
#   * critest pulls `localhost:5000/<path>` (--registry-prefix drops the tag, so :latest), and
#   * creates containers from, and checks ImageStatus/ListImages against, the canonical name.
# Idempotent: the registry is started only when it does not answer, the images are rebuilt and
# pushed only when busybox, the pause binary or this script changed, and a second run only
# re-pulls and re-tags what a critest run removed. Run it before every critest run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
state=${CRITEST_REGISTRY_DIR:-/var/lib/cri-shim-registry}
listen=127.0.0.1:5000
prefix=localhost:5000
log=/var/log/cri-shim-registry.log
docker=/usr/bin/docker
busybox=/bin/busybox
pause="$here/build/pause/pause"
label=io.cri-shim.critest-image

# Each row: registry repository, its tags there (comma separated), the kind of rootfs, and the
# canonical names (comma separated) the image also carries in the local Docker. Every repository
# has a :latest alias of the image the tests mean, because --registry-prefix pulls :latest.
# test-image-tag:test and :all are two images in one repository; :latest is the :test one.
images() {
    cat <<'TABLE'
e2e-test-images/busybox	1.29-2,latest	busybox	registry.k8s.io/e2e-test-images/busybox:1.29-2
e2e-test-images/nginx	1.14-2,latest	nginx	registry.k8s.io/e2e-test-images/nginx:1.14-2
k8s-staging-cri-tools/hostnet-nginx-amd64	latest	hostnet-nginx	gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest
e2e-test-images/httpd	2.4.39-4,latest	httpd	registry.k8s.io/e2e-test-images/httpd:2.4.39-4
e2e-test-images/nonewprivs	1.3,latest	nonewprivs	registry.k8s.io/e2e-test-images/nonewprivs:1.3
k8s-staging-cri-tools/test-image-predefined-group	latest	predefined-group	gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest
k8s-staging-cri-tools/test-image-user-uid	latest	user=1002	gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest
k8s-staging-cri-tools/test-image-user-username	latest	user=www-data	gcr.io/k8s-staging-cri-tools/test-image-user-username:latest
k8s-staging-cri-tools/test-image-user-uid-group	latest	user=1003:1004	gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest
k8s-staging-cri-tools/test-image-user-username-group	latest	user=www-data:1004	gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest
k8s-staging-cri-tools/test-image-1	latest	busybox	gcr.io/k8s-staging-cri-tools/test-image-1:latest
k8s-staging-cri-tools/test-image-2	latest	busybox	gcr.io/k8s-staging-cri-tools/test-image-2:latest
k8s-staging-cri-tools/test-image-3	latest	busybox	gcr.io/k8s-staging-cri-tools/test-image-3:latest
k8s-staging-cri-tools/test-image-latest	latest	busybox	gcr.io/k8s-staging-cri-tools/test-image-latest:latest
k8s-staging-cri-tools/test-image-digest	latest	busybox	-
k8s-staging-cri-tools/test-image-tag	test,latest	busybox	gcr.io/k8s-staging-cri-tools/test-image-tag:test
k8s-staging-cri-tools/test-image-tag	all	busybox	gcr.io/k8s-staging-cri-tools/test-image-tag:all
k8s-staging-cri-tools/test-image-tags	1,2,3,latest	busybox	gcr.io/k8s-staging-cri-tools/test-image-tags:1,gcr.io/k8s-staging-cri-tools/test-image-tags:2,gcr.io/k8s-staging-cri-tools/test-image-tags:3
pause	3.9,latest	pause	registry.k8s.io/pause:3.9,k8s.gcr.io/pause:3.9
TABLE
}

say() { echo "critest-images: $*"; }

ensure_packages() {
    local missing=()
    for pkg in docker-registry busybox-static; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    [ -x "$pause" ] || bash "$here/scripts/pause-image.sh" >/dev/null
}

registry_up() { curl -sf -o /dev/null --max-time 2 "http://$listen/v2/"; }

ensure_registry() {
    registry_up && return 0
    mkdir -p "$state/storage"
    # Only loopback: nothing outside this machine may reach it.
    cat >"$state/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $state/storage
  delete:
    enabled: true
http:
  addr: $listen
CONF
    say "starting docker-registry on $listen (log $log)"
    # A daemon of its own: no descriptor of ours (the lock on fd 9, a caller's pipes) stays open
    # in it, or our lock and the caller's output would live as long as the registry.
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec setsid /usr/bin/docker-registry serve "$state/config.yml" >>"$log" 2>&1 </dev/null
    ) &
    for _ in $(seq 100); do
        registry_up && return 0
        sleep 0.1
    done
    say "docker-registry did not answer on $listen; see $log" >&2
    tail -n 20 "$log" >&2
    exit 1
}

# base_rootfs ROOT comes from scripts/busybox-rootfs.sh (shared with the test image).
. "$(dirname "$0")/busybox-rootfs.sh"

# A web server on PORT that exits on SIGTERM: PID 1 of a pid namespace ignores signals it has no
# handler for, and busybox httpd installs none, so a shell traps TERM and runs httpd as a child.
serve_script() {
    local root=$1 port=$2 pidfile=$3
    echo "<html><body>cri-shim critest substitute</body></html>" >"$root/var/www/index.html"
    cat >"$root/usr/sbin/serve" <<SH
#!/bin/sh
${pidfile:+echo \$\$ >$pidfile}
httpd -f -p $port -h /var/www &
child=\$!
trap 'kill \$child 2>/dev/null; exit 0' TERM INT QUIT
wait \$child
SH
    chmod 755 "$root/usr/sbin/serve"
}

# The nginx substitute: the serving shell runs from /usr/sbin/nginx (a hard link to busybox, so
# its command name is `nginx`, which `pidof nginx` finds) with an argv[0] that still starts with
# "busybox" (so busybox runs its argv[1] applet) and reads like nginx's master process (the
# PodPID/ContainerPID specs grep /proc/1/cmdline for "master process").
nginx_rootfs() {
    local root=$1 port=$2
    serve_script "$root" "$port" /var/run/nginx.pid
    ln "$root/bin/busybox" "$root/usr/sbin/nginx"
    cat >"$root/usr/sbin/nginx-start" <<'SH'
#!/bin/sh
exec -a "busybox: nginx: master process nginx -g daemon off;" /usr/sbin/nginx sh /usr/sbin/serve
SH
    chmod 755 "$root/usr/sbin/nginx-start"
}

# nonewprivs: print the effective uid of a setuid-root program. A setuid copy of busybox runs
# `sh` with root's euid only when /etc/busybox.conf grants it; under no_new_privs the kernel
# ignores the setuid bit and the euid stays the caller's. Read /proc/self/status with shell
# built-ins only: busybox-static's awk and cut crash for non-root users once busybox.conf exists.
nonewprivs_rootfs() {
    local root=$1
    mkdir -p "$root/usr/lib/setuid"
    cp "$busybox" "$root/usr/lib/setuid/busybox"
    chmod 4755 "$root/usr/lib/setuid/busybox"
    printf '[SUID]\nsh = ssx 0.0\n' >"$root/etc/busybox.conf"
    chmod 600 "$root/etc/busybox.conf"
    cat >"$root/usr/sbin/effective-uid" <<'SH'
#!/usr/lib/setuid/busybox sh
while read -r key _real effective _rest; do
    [ "$key" = "Uid:" ] && echo "Effective uid: $effective"
done </proc/self/status
SH
    chmod 755 "$root/usr/sbin/effective-uid"
}

# Import one row's image from a fresh rootfs, under localhost:5000/<repo>:<first tag>.
build_image() {
    local repo=$1 tags=$2 kind=$3 work=$4
    local root="$work/rootfs" first=${tags%%,*}
    local changes=(--change "ENV PATH=/usr/sbin:/usr/bin:/bin" --change "LABEL $label=$stamp")
    rm -rf "$root"
    mkdir -p "$root"
    if [ "$kind" = pause ]; then
        cp "$pause" "$root/pause"
        changes+=(--change 'ENTRYPOINT ["/pause"]')
    else
        base_rootfs "$root"
        case "$kind" in
        busybox) changes+=(--change 'CMD ["sh"]') ;;
        nginx)
            nginx_rootfs "$root" 80
            changes+=(--change 'CMD ["/usr/sbin/nginx-start"]' --change 'EXPOSE 80')
            ;;
        hostnet-nginx)
            nginx_rootfs "$root" 12003
            changes+=(--change 'CMD ["/usr/sbin/nginx-start"]' --change 'EXPOSE 12003')
            ;;
        httpd)
            # The multi-container log spec waits for a line containing "httpd".
            serve_script "$root" 80 ""
            sed -i '2i echo "httpd: busybox httpd serving /var/www on port 80"' "$root/usr/sbin/serve"
            changes+=(--change 'CMD ["/usr/sbin/serve"]' --change 'EXPOSE 80')
            ;;
        nonewprivs)
            nonewprivs_rootfs "$root"
            changes+=(--change 'CMD ["/usr/sbin/effective-uid"]')
            ;;
        predefined-group)
            echo "default-user:x:1000:1000::/home/default-user:/bin/sh" >>"$root/etc/passwd"
            printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' \
                >>"$root/etc/group"
            changes+=(--change 'CMD ["sh"]' --change 'USER 1000')
            ;;
        user=*) changes+=(--change 'CMD ["sh"]' --change "USER ${kind#user=}") ;;
        *)
            say "unknown image kind $kind" >&2
            exit 1
            ;;
        esac
    fi
    # A marker per row, so that every row is an image of its own (its own image ID).
    echo "$repo:$first" >"$root/cri-shim-critest-image"
    tar -C "$root" --numeric-owner -c . |
        "$docker" import "${changes[@]}" - "$prefix/$repo:$first" >/dev/null
}

push_row() {
    local repo=$1 tags=$2 first=${2%%,*}
    local IFS=,
    for tag in $tags; do
        [ "$tag" = "$first" ] || "$docker" tag "$prefix/$repo:$first" "$prefix/$repo:$tag"
        "$docker" push -q "$prefix/$repo:$tag" >/dev/null
    done
}

# The local Docker holds the row under its localhost:5000 names and its canonical names.
seed_row() {
    local repo=$1 tags=$2 canonical=$3 first=${2%%,*}
    local have
    have=$("$docker" image inspect -f "{{index .Config.Labels \"$label\"}}" \
        "$prefix/$repo:$first" 2>/dev/null || true)
    if [ "$have" != "$stamp" ]; then
        "$docker" pull -q "$prefix/$repo:$first" >/dev/null
    fi
    local IFS=,
    for tag in $tags; do
        [ "$tag" = "$first" ] || "$docker" tag "$prefix/$repo:$first" "$prefix/$repo:$tag"
    done
    if [ "$canonical" != - ]; then
        for name in $canonical; do
            "$docker" tag "$prefix/$repo:$first" "$name"
        done
    fi
}

# Images under our registry's names that no tag names any more: earlier builds, and what
# critest's image specs pulled by digest and untagged. Left alone, every run of the suite adds
# some twenty to the engine. One still used by a container is kept (rmi refuses it).
remove_untagged() {
    "$docker" images --filter dangling=true --format '{{.ID}} {{.Repository}}' |
        awk -v p="$prefix/" 'index($2, p) == 1 { print $1 }' | sort -u |
        xargs -r "$docker" rmi >/dev/null 2>&1 || true
}

# The registry holds every row's tags of this stamp.
registry_current() {
    [ "$(cat "$state/stamp" 2>/dev/null)" = "$stamp" ] || return 1
    local repo tags _kind _canonical
    while IFS=$'\t' read -r repo tags _kind _canonical; do
        curl -sf -o /dev/null --max-time 5 -I \
            -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
            "http://$listen/v2/$repo/manifests/${tags%%,*}" || return 1
    done < <(images)
}

main() {
    ensure_packages
    mkdir -p "$state"
    exec 9>"$state/lock"
    flock 9
    ensure_registry
    stamp=$( (sha256sum "$busybox" "$pause"; sha256sum "$0" "$(dirname "$0")/busybox-rootfs.sh") | sha256sum | cut -c1-16)
    local repo tags kind canonical
    if ! registry_current; then
        say "building and pushing the substitute images ($stamp)"
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        rm -f "$state/stamp"
        while IFS=$'\t' read -r repo tags kind canonical; do
            build_image "$repo" "$tags" "$kind" "$work"
            push_row "$repo" "$tags"
        done < <(images)
        echo "$stamp" >"$state/stamp"
    fi
    while IFS=$'\t' read -r repo tags kind canonical; do
        seed_row "$repo" "$tags" "$canonical"
    done < <(images)
    remove_untagged
}

main "$@"
