#!/usr/bin/env bash
# Generates the stubs into a temporary directory and runs the Python client
# against ADDR (default: $TOPDECK_RESILIENCE_ADDR, else localhost:50051).
#
#   examples/python/run.sh [HOST:PORT]
#
# The interpreter is $PYTHON, else the first of python3 and /usr/bin/python3
# that can import grpc and google.protobuf (Debian's python3-grpcio is only
# visible to /usr/bin/python3 when another python3, e.g. pyenv's, comes first
# in PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

py="${PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import grpc, google.protobuf' 2>/dev/null; then py="$c"; break; fi
  done
fi
if [ -z "$py" ]; then
  echo "python example: no python3 can import grpc and google.protobuf; run examples/install-deps.sh" >&2
  exit 3
fi

stubs="$(mktemp -d)"
trap 'rm -rf "$stubs"' EXIT
PYTHON="$py" "$here/gen.sh" "$stubs"
TOPDECK_PY_STUBS="$stubs" "$py" "$here/client.py" "$@"
