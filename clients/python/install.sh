#!/usr/bin/env bash
# Installs the topdeck_resilience package on this machine, without PyPI:
#
#   clients/python/install.sh            # or: make python-install
#
# 1. apt-get installs what a fresh Debian machine lacks: python3-grpcio and
#    python3-protobuf (the SDK's only dependencies), python3-pip,
#    python3-setuptools and python3-wheel (to build the package).
# 2. Builds a wheel of clients/python with Debian's /usr/bin/python3 and
#    installs it for that interpreter (into /usr/local, beside Debian's
#    packages; --break-system-packages is what Debian's pip asks for there).
# 3. Installs it too for the `python3` first in PATH (and $PYTHON) when that
#    is another interpreter (pyenv, a venv). When that interpreter cannot
#    import grpc and google.protobuf and is of the same Python minor version
#    as Debian's, it gets a .pth file that makes Debian's grpc and protobuf
#    (only those two) importable; with another minor version it is told to
#    install grpcio and protobuf itself.
#
# Idempotent; re-run it after changing the package. Uses sudo only when not
# root and sudo is available.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DEB_PY=/usr/bin/python3
DIST=/usr/lib/python3/dist-packages
apt_who=python-install
# shellcheck source=apt.sh
. "$here/apt.sh"
say() { echo "python-install: $*" >&2; }

pkgs=()
[ -x "$DEB_PY" ] || pkgs+=(python3)
if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; pkgs=(); fi
"$DEB_PY" -c 'import grpc, google.protobuf' 2>/dev/null || pkgs+=(python3-grpcio python3-protobuf)
"$DEB_PY" -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
"$DEB_PY" -c 'import setuptools, wheel' 2>/dev/null || pkgs+=(python3-setuptools python3-wheel)
if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi

wheels="$(mktemp -d)"
trap 'rm -rf "$wheels" "$here/build" "$here"/*.egg-info' EXIT
"$DEB_PY" -m pip wheel --quiet --no-deps --no-build-isolation --no-index --disable-pip-version-check -w "$wheels" "$here" >/dev/null
wheel=$(ls "$wheels"/topdeck_resilience-*.whl)

install_for() { # interpreter
  local py="$1" exe
  exe="$("$py" -c 'import sys; print(sys.executable)')"
  local flags=(--quiet --no-deps --no-index --force-reinstall --disable-pip-version-check --root-user-action=ignore)
  if [ "$exe" = "$DEB_PY" ] || "$py" -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    flags+=(--break-system-packages)
  fi
  "$py" -m pip install "${flags[@]}" "$wheel" >/dev/null
  if ! "$py" -c 'import grpc, google.protobuf' 2>/dev/null; then
    local mine deb
    mine="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    deb="$("$DEB_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$mine" != "$deb" ]; then
      say "$exe is Python $mine; Debian's grpcio is for $deb: install grpcio and protobuf for it (pip install grpcio protobuf), or use $DEB_PY"
      return 0
    fi
    local site deps
    site="$("$py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
    deps="$site/topdeck_resilience_debian_deps"
    mkdir -p "$deps/google"
    ln -sfn "$DIST/grpc" "$deps/grpc"
    ln -sfn "$DIST/google/protobuf" "$deps/google/protobuf"
    echo "$deps" > "$site/topdeck_resilience_debian_deps.pth"
    say "$exe: Debian's grpc and protobuf made importable ($site/topdeck_resilience_debian_deps.pth)"
  fi
  "$py" -c 'import topdeck_resilience, sys; print("python-install: topdeck_resilience", topdeck_resilience.__version__, "for", sys.executable)' >&2
}

install_for "$DEB_PY"
declare -A done_exe=(["$DEB_PY"]=1)
for py in "${PYTHON:-}" python3; do
  [ -n "$py" ] && command -v "$py" >/dev/null || continue
  exe="$("$py" -c 'import sys; print(sys.executable)' 2>/dev/null)" || continue
  [ -n "${done_exe[$exe]:-}" ] && continue
  done_exe[$exe]=1
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    say "$exe has no pip: skipped (use $DEB_PY)"
    continue
  fi
  install_for "$py"
done
