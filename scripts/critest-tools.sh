#!/usr/bin/env bash
# critest, the CRI validation suite of cri-tools, for tests/critest. It is a Ginkgo test binary,
# so it is built with `go test -c` from a throwaway module that requires cri-tools, through the
# Go module proxy. Built once: skipped when .tools/bin/critest already reports this version.
set -euo pipefail
version=v1.36.0
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/.tools/bin"
go=${GO:-/usr/local/go/bin/go}
mkdir -p "$bin"
if [ -x "$bin/critest" ] && "$bin/critest" --version 2>/dev/null | grep -q "$version"; then
    exit 0
fi
if [ ! -x "$go" ]; then
    echo "critest-tools: WARNING: no Go toolchain at $go; the critest test will be skipped" >&2
    exit 0
fi
module="$here/.tools/critest-build"
mkdir -p "$module"
cd "$module"
if [ ! -f go.mod ]; then
    "$go" mod init cri-shim.local/critest-build >/dev/null 2>&1
fi
# A blank import keeps `go mod tidy` from dropping the requirement; the test binary itself is
# built straight from the dependency's package path.
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "sigs.k8s.io/cri-tools/cmd/critest"
GO
echo "critest-tools: building critest $version (go test -c, takes a few minutes the first time)"
"$go" mod edit -require="sigs.k8s.io/cri-tools@$version"
GOFLAGS=-mod=mod "$go" mod tidy -e >/dev/null 2>&1 || true
GOFLAGS=-mod=mod "$go" mod download sigs.k8s.io/cri-tools
GOFLAGS=-mod=mod "$go" test -c -o "$bin/critest.new" \
    -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$version" \
    sigs.k8s.io/cri-tools/cmd/critest
mv "$bin/critest.new" "$bin/critest"
"$bin/critest" --version
