#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to run the polyglot examples
# (tests/polyglot_test.go runs them):
#   - Python: grpcio and protobuf for python3 (Debian packages python3-grpcio,
#     python3-protobuf; PyPI is not needed). The Python example uses the SDK
#     from clients/python (its stubs are committed; clients/python/test.sh
#     installs what the SDK's own tests and stub generation need);
#   - Node: node and npm (Debian's nodejs and npm when missing), then
#     `npm ci` in examples/node from the committed package-lock.json.
# Idempotent and quiet when everything is there. Uses sudo only when not
# root and sudo is available.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
apt_who=install-deps
# shellcheck source=../clients/python/apt.sh
. "$here/../clients/python/apt.sh"

# Python. Debian's python3-grpcio lands in /usr/lib/python3/dist-packages,
# which only /usr/bin/python3 sees (unless clients/python/install.sh ran):
# examples/python/run.sh looks there too.
py_ok() {
  for c in python3 /usr/bin/python3; do
    command -v "$c" >/dev/null && "$c" -c 'import grpc, google.protobuf' 2>/dev/null && return 0
  done
  return 1
}
pkgs=()
py_ok || pkgs+=(python3 python3-grpcio python3-protobuf)
if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi
py_ok || { echo "install-deps: python3 still cannot import grpc and google.protobuf" >&2; exit 1; }

# Node.
pkgs=()
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi

# npm ci only when node_modules does not match the lock file (a stamp holds
# the lock file it was installed from).
node_dir="$here/node"
stamp="$node_dir/node_modules/.topdeck-installed-lock.json"
if ! cmp -s "$node_dir/package-lock.json" "$stamp" 2>/dev/null; then
  echo "install-deps: npm ci in examples/node" >&2
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$node_dir/package-lock.json" "$stamp"
fi
