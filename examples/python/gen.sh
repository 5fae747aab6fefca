#!/usr/bin/env bash
# Generates the Python message and gRPC stubs of proto/ into OUT_DIR
# (default: examples/python/gen, which is git-ignored).
#
#   examples/python/gen.sh [OUT_DIR]
#
# Uses the standard protoc with the gRPC Python plugin (Debian:
# protobuf-compiler, protobuf-compiler-grpc), or `python3 -m grpc_tools.protoc`
# when those are missing and grpcio-tools is installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_dir="$(cd "$here/../../proto" && pwd)"
out="${1:-$here/gen}"
mkdir -p "$out"

protos=()
while IFS= read -r f; do protos+=("$f"); done < <(cd "$proto_dir" && find . -name '*.proto' | sed 's|^\./||' | sort)

if command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null; then
  protoc -I "$proto_dir" \
    --python_out="$out" \
    --grpc_python_out="$out" \
    --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
    "${protos[@]}"
elif "${PYTHON:-python3}" -c 'import grpc_tools' 2>/dev/null; then
  "${PYTHON:-python3}" -m grpc_tools.protoc -I "$proto_dir" \
    --python_out="$out" --grpc_python_out="$out" "${protos[@]}"
else
  echo "gen.sh: need protoc and grpc_python_plugin (or grpcio-tools); run examples/install-deps.sh" >&2
  exit 3
fi

# The generated modules import each other as topdeck.resilience.v1.*: make
# the directories packages so that this works on every Python 3.
find "$out/topdeck" -type d -exec touch {}/__init__.py \;
