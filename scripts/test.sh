#!/usr/bin/env bash
# The whole test suite from nothing: installs what the tests need (cached under
# ~/.cache/cellchat, so a warm machine skips downloads and builds), then runs pytest.
# Extra arguments go to pytest, e.g. `./scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh %(%H:%M:%S)T] %s\n' -1 "$*"; }

# Debian packages the real components need (present on the polyglot image; installed if not).
missing=()
[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ] || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/usr/local/go/bin"

log "python packages"
python3 -m pip install --quiet --disable-pip-version-check -e ".[dev]"

# The slow fetches and builds run side by side; each one is idempotent and cached.
log "fetching Cassandra, building kube-apiserver/etcd/helm, installing grpcurl and Redis"
pids=()
python3 -m tests.infra.cassandra fetch > /tmp/cellchat-fetch-cassandra.log 2>&1 & pids+=($!)
python3 -m tests.infra.kube build > /tmp/cellchat-build-kube.log 2>&1 & pids+=($!)
bash scripts/install-grpcurl.sh > /tmp/cellchat-grpcurl.log 2>&1 & pids+=($!)
python3 -m tests.infra.redis install > /tmp/cellchat-redis.log 2>&1 & pids+=($!)
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ "$failed" -ne 0 ]; then
  tail -n 40 /tmp/cellchat-fetch-cassandra.log /tmp/cellchat-build-kube.log \
    /tmp/cellchat-grpcurl.log /tmp/cellchat-redis.log
  log "a prerequisite failed (logs above)"; exit 1
fi

log "pytest"
exec python3 -m pytest "$@"
