#!/usr/bin/env bash
# kubelet v1.34.4 for tests/kubelet and `make bench`, built through the Go module proxy.
# `go install k8s.io/kubernetes/cmd/kubelet@...` is refused (k8s.io/kubernetes replaces its
# staging modules with local paths), so a throwaway main module requires k8s.io/kubernetes and
# replaces each staging module with the same module at v0.34.4. Built once: skipped when
# .tools/bin/kubelet already reports this version. Takes ~6 minutes and a few GiB the first time.
set -euo pipefail
version=v1.34.4
staging=v0.${version#v1.}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/.tools/bin"
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
mkdir -p "$bin"
if [ -x "$bin/kubelet" ] && "$bin/kubelet" --version 2>/dev/null | grep -qx "Kubernetes $version"; then
    exit 0
fi
if [ ! -x "$go" ]; then
    echo "kubelet-tools: WARNING: no Go toolchain at $go; the kubelet tests will be skipped" >&2
    exit 0
fi
module="$here/.tools/kubelet-build"
mkdir -p "$module"
cd "$module"
echo "kubelet-tools: building kubelet $version (takes ~6 minutes the first time)"
# k8s.io/kubernetes' own go.mod: its go/godebug lines and the staging replacements.
gomod=$(GOFLAGS=-mod=mod "$go" mod download -json "k8s.io/kubernetes@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$gomod" ] || [ ! -f "$gomod" ]; then
    echo "kubelet-tools: cannot download k8s.io/kubernetes@$version's go.mod" >&2
    exit 1
fi
{
    echo "module cri-shim.local/kubelet-build"
    echo
    grep -E '^go [0-9]' "$gomod"
    # godebug is a line or a block.
    awk '/^godebug \(/ {b=1} b {print} b && /^\)/ {b=0; next} /^godebug [^(]/ {print}' "$gomod"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
} >go.mod.new
mv go.mod.new go.mod
n=$(grep -c " => k8s.io/" go.mod || true)
echo "kubelet-tools: $n staging modules replaced at $staging"
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
GO
pkg=k8s.io/component-base/version
minor=$(echo "$version" | cut -d. -f2)
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
GOFLAGS=-mod=mod "$go" build -trimpath -ldflags "$ldflags" -o "$bin/kubelet.new" \
    k8s.io/kubernetes/cmd/kubelet
mv "$bin/kubelet.new" "$bin/kubelet"
"$bin/kubelet" --version
