#!/usr/bin/env bash
# Runs the Python SDK's tests (pytest, real resilienced and redis-server
# processes) with Debian's /usr/bin/python3, after installing with apt-get
# what a fresh machine lacks:
#
#   clients/python/test.sh [PYTEST ARGS...]      # or: make python-test
#
# resilienced is built once from this tree (Go required) into a temporary
# directory. The whole run is bounded (5 minutes); it takes well under one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
PY=/usr/bin/python3
apt_who=python-test
# shellcheck source=apt.sh
. "$here/apt.sh"

command -v go >/dev/null || { echo "python-test: Go is required to build resilienced" >&2; exit 1; }
pkgs=()
[ -x "$PY" ] || pkgs+=(python3)
if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; pkgs=(); fi
"$PY" -c 'import grpc, google.protobuf' 2>/dev/null || pkgs+=(python3-grpcio python3-protobuf)
"$PY" -c 'import pytest' 2>/dev/null || pkgs+=(python3-pytest)
"$PY" -c 'import pytest_asyncio' 2>/dev/null || pkgs+=(python3-pytest-asyncio)
command -v protoc >/dev/null || pkgs+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null || pkgs+=(protobuf-compiler-grpc)
command -v redis-server >/dev/null || pkgs+=(redis-server)
command -v openssl >/dev/null || pkgs+=(openssl)
if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
echo "python-test: go build ./cmd/resilienced" >&2
(cd "$repo" && go build -o "$bin/" ./cmd/resilienced)

echo "python-test: pytest (clients/python/tests)" >&2
cd "$here"
RESILIENCED_BIN="$bin/resilienced" PYTHONDONTWRITEBYTECODE=1 \
  timeout -k 10 300 "$PY" -m pytest -q -p no:cacheprovider "$@"
