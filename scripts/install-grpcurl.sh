#!/usr/bin/env bash
# Install grpcurl, the stock gRPC command-line client the integration tests drive our server
# with (reflection, health, error statuses), into ~/.cache/cellchat/bin. Built from its Go
# module at a pinned version; idempotent: an existing binary of that version is kept.
set -euo pipefail

GRPCURL_VERSION="v1.9.4"
BIN_DIR="${CELLCHAT_CACHE:-$HOME/.cache/cellchat}/bin"
export PATH="$PATH:/usr/local/go/bin"

command -v go >/dev/null || { echo "install-grpcurl: Go is required (expected at /usr/local/go/bin)" >&2; exit 1; }
# `go install` leaves grpcurl's own -version unset ("dev build"); the module version is in the
# binary's build info.
installed_version() {
  go version -m "$BIN_DIR/grpcurl" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/fullstorydev/grpcurl" {print $3}'
}
if [[ -x "$BIN_DIR/grpcurl" && "$(installed_version)" == "$GRPCURL_VERSION" ]]; then
  exit 0
fi
mkdir -p "$BIN_DIR"
GOBIN="$BIN_DIR" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@${GRPCURL_VERSION}"
echo "installed grpcurl $(installed_version) at $BIN_DIR/grpcurl"
