#!/usr/bin/env bash
# Installs what drfleet needs on a fresh Debian/Ubuntu machine and is safe to run twice:
#  - Debian packages (as root, only those missing): redis-server, postgresql, openssh-server,
#    rsync, zstd, rclone, python3-venv, prometheus-alertmanager; optionally chromium and prometheus (promtool)
#  - a virtual environment in .venv with the pinned dependencies of requirements.lock and
#    drfleet itself (editable)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_dump >/dev/null || need+=(postgresql postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v rsync >/dev/null || need+=(rsync)
command -v zstd >/dev/null || need+=(zstd)
command -v rclone >/dev/null || need+=(rclone)  # the rclone store (GCS, B2, Azure, WebDAV, ...)
command -v openssl >/dev/null || need+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)  # alerts -> drfleet alerts serve
# Optional: tests that need these skip with a reason when they are missing.
want_optional=()
[ -x /usr/bin/chromium ] || want_optional+=(chromium)   # Flower and report screenshots
command -v promtool >/dev/null || want_optional+=(prometheus)  # promtool check/test rules
command -v docker-compose >/dev/null || want_optional+=(docker-compose)  # `docker-compose config` of compose/
command -v tmux >/dev/null || want_optional+=(tmux)  # the terminal-screen test of the CLI (tests/cli/test_terminal_screen.py)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # the packages' own services are not needed: drfleet's tests start their own servers
    systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
  else
    echo "bootstrap: missing system packages: ${need[*]} (install them, or run as root to let this script do it)" >&2
    exit 1
  fi
fi
if [ ${#want_optional[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bootstrap: installing optional Debian packages: ${want_optional[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { [ ${#need[@]} -gt 0 ] || apt-get update -qq; } && \
    apt-get install -y -qq --no-install-recommends "${want_optional[@]}" >/dev/null || \
    echo "bootstrap: optional packages not installed; their tests will skip" >&2
  # the prometheus package starts a server we do not need
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
mkdir -p /run/sshd 2>/dev/null || true
# Optional: Azurite (Azure Blob emulator, npm) for the Azure tests of the rclone store; they skip without it.
if ! command -v azurite-blob >/dev/null && command -v npm >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "bootstrap: installing Azurite (npm)"
  npm install -g --silent azurite >/dev/null 2>&1 || echo "bootstrap: Azurite not installed; the Azure tests will skip" >&2
fi

PY=${PYTHON:-python3}
stamp=.venv/.drfleet-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing pinned Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . >/dev/null
  echo "$want" > "$stamp"
fi
