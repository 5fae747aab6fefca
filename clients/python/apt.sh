# apt_install PKG...: installs Debian packages with apt-get, quietly, after
# one `apt-get update` per run; uses sudo only when not root and sudo is
# available. Its message starts with "$apt_who:" (set it first).
#
# Sourced, not run: by clients/python/test.sh, clients/python/install.sh and
# examples/install-deps.sh.

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
apt_updated=""
apt_install() {
  echo "$apt_who: installing $* with apt-get" >&2
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
