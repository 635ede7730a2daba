#!/usr/bin/env bash
# Installs what Phoenix's tests and benchmarks need on a fresh Debian machine:
# Debian packages (only those missing) and a Python venv with moto server and boto3.
# Idempotent and quick when everything is already there.
set -euo pipefail

PHOENIX_VENV="${PHOENIX_VENV:-$HOME/.cache/phoenix/venv}"
# The test venv is pinned (issue 17): moto's behaviour (docs/providers.md, the shared
# services notes) changes between releases, so an unpinned install could change what
# the tests see from one day to the next. To upgrade: bump both versions here, run
# `scripts/setup.sh` (it reinstalls when the venv differs), then the whole suite, and
# note any moto behaviour change in docs/providers.md.
MOTO_VERSION=5.2.5
BOTO3_VERSION=1.44.8

need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
# Real services the whole-daemon tests talk to, started by the tests on loopback ports.
[ -x /usr/bin/prometheus-alertmanager ] || need_apt+=(prometheus-alertmanager)
[ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# Commit-signing tests (issue 18) make keys and signed commits with the real tools.
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v gpg >/dev/null || need_apt+=(gnupg)
# sqlite3 lets a test break the state database under a running daemon.
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # --no-install-recommends, and the services are never started by apt here (no init
  # system in these containers); tests start their own on free loopback ports.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# git daemon serves test repositories over git:// on loopback.
git daemon --help >/dev/null 2>&1 || { echo "setup: 'git daemon' is not available" >&2; exit 1; }

installed_versions() {
  "$PHOENIX_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"), m.version("boto3"))' 2>/dev/null
}
if [ ! -x "$PHOENIX_VENV/bin/moto_server" ] || [ "$(installed_versions)" != "$MOTO_VERSION $BOTO3_VERSION" ]; then
  echo "setup: installing moto[server]==$MOTO_VERSION and boto3==$BOTO3_VERSION in $PHOENIX_VENV"
  python3 -m venv "$PHOENIX_VENV"
  "$PHOENIX_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "boto3==$BOTO3_VERSION"
fi
echo "setup: ok (venv: $PHOENIX_VENV)"
