#!/usr/bin/env bash
# Runs the Python client (a user of the SDK in clients/python) against ADDR
# (default: $TOPDECK_RESILIENCE_ADDR, else localhost:50051).
#
#   examples/python/run.sh [HOST:PORT]
#
# The interpreter is $PYTHON, else the first of python3 and /usr/bin/python3
# that can import grpc and google.protobuf (Debian's python3-grpcio is only
# visible to /usr/bin/python3 when another python3, e.g. pyenv's, comes first
# in PATH and clients/python/install.sh has not been run). The SDK comes from
# this checkout (clients/python), installed or not.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

py="${PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import grpc, google.protobuf' 2>/dev/null; then py="$c"; break; fi
  done
fi
if [ -z "$py" ]; then
  echo "python example: no python3 can import grpc and google.protobuf; run clients/python/install.sh" >&2
  exit 3
fi
PYTHONPATH="$here/../../clients/python${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$here/client.py" "$@"
