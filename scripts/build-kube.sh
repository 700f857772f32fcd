#!/usr/bin/env bash
# Build (or find in the cache) the test control plane: kube-apiserver, etcd,
# kube-controller-manager and helm. All logic lives in tests/infra/kube.py;
# this exists so CI and humans can warm the cache as a separate, timed step.
# Cache: $CELLCHAT_CACHE (default ~/.cache/cellchat). Go: $GO, else `go` on
# PATH, else /usr/local/go/bin/go.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m tests.infra.kube build "$@"
