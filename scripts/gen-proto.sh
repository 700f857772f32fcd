#!/usr/bin/env bash
# Generate the Python code for every .proto under proto/ into services/ (so
# proto/cellchat/api/chat/v1/chat.proto becomes the module cellchat.api.chat.v1.chat_pb2):
#   *_pb2.py, *_pb2.pyi   messages (protoc's Python and stub generators)
#   *_grpc.py             purerpc servicers and stubs (our servers)
#   *_pb2_grpc.py         grpcio stubs (stock-client tests, Python clients of our API)
# plus an empty __init__.py in every generated package.
#
# Generated code is never edited by hand: tests/unit/test_generated_code.py regenerates into a
# temporary directory and fails if the committed files differ.
#
# Usage: scripts/gen-proto.sh [OUTPUT_ROOT]   (default: services/ of this repository)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROTO_DIR="$ROOT/proto"
OUT="${1:-$ROOT/services}"
API_DIR="cellchat/api"

cd "$PROTO_DIR"
mapfile -t PROTOS < <(find . -name '*.proto' -printf '%P\n' | LC_ALL=C sort)
for proto in "${PROTOS[@]}"; do
  # Everything generated must land in the cellchat.api package, nowhere else in services/.
  if [[ "$proto" != "$API_DIR/"* ]]; then
    echo "gen-proto: $proto is outside proto/$API_DIR/; move it there" >&2
    exit 1
  fi
done

command -v protoc-gen-purerpc >/dev/null || {
  echo "gen-proto: protoc-gen-purerpc not on PATH (it comes with the purerpc package)" >&2
  exit 1
}

# Start from a clean slate so that a removed or renamed .proto leaves no stale module behind.
if [[ -d "$OUT/$API_DIR" ]]; then
  find "$OUT/$API_DIR" -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_grpc.py' \
    -o -name '__init__.py' \) -delete
  find "$OUT/$API_DIR" -depth -type d -name '__pycache__' -exec rm -rf {} +
  find "$OUT/$API_DIR" -depth -type d -empty -delete
fi
mkdir -p "$OUT"

# grpc_tools.protoc adds the include path of the well-known types (google/protobuf/*.proto).
python -m grpc_tools.protoc \
  --proto_path="$PROTO_DIR" \
  --python_out="$OUT" \
  --pyi_out="$OUT" \
  --purerpc_out="$OUT" \
  --grpc_python_out="$OUT" \
  "${PROTOS[@]}"

# Every directory from cellchat/api down is a regular package.
while IFS= read -r dir; do
  touch "$dir/__init__.py"
done < <(find "$OUT/$API_DIR" -type d)
