#!/bin/sh
# Download Apache Cassandra's server jars into the test cache ($CELLCHAT_CACHE, by default
# ~/.cache/cellchat) so that the first test run does not pay for it. A no-op when cached.
# Needs Maven and Java 17 (apt-get install -y maven openjdk-17-jre-headless).
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m tests.infra.cassandra fetch
