#!/usr/bin/env bash
# Set up everything jobpulse needs on a fresh Debian/Ubuntu machine, idempotently.
#   scripts/bootstrap.sh          the runtime: ffmpeg (videos), and a virtualenv in .venv with jobpulse
#                                 installed (the OCR model ships inside the rapidocr wheel)
#   scripts/bootstrap.sh --test   also what the test suite and the benchmarks need: redis-server,
#                                 PostgreSQL, wrk, and Node.js with the browser client's dev
#                                 dependencies (clients/js/node_modules)
# System packages are installed with apt-get when missing and we are root (or have sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: please install: $*" >&2
    return 1
  fi
  echo "bootstrap: installing $* with apt-get" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A Python of 3.11 or newer: python3 if it is one, else the newest on PATH (Ubuntu 22.04: apt brings 3.11).
find_python() {
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}
python=$(find_python)
if [ -z "$python" ]; then
  apt_install python3.11 python3.11-venv
  python=python3.11
fi

missing=()
"$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=("$(basename "$python")-venv")
# Videos are probed and transcoded by ffmpeg and ffprobe from PATH (Debian's ffmpeg brings both).
{ command -v ffmpeg && command -v ffprobe; } >/dev/null || missing+=(ffmpeg)
if [ "$want_test" = 1 ]; then
  command -v redis-server >/dev/null || missing+=(redis-server)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  # The browser client's tests need Node.js 20 or newer (node:test, fetch) and npm.
  node_ok() { node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' 2>/dev/null; }
  node_ok || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v wrk >/dev/null || missing+=(wrk)  # the benchmarks' load generator (smoke-run by the suite)
fi
if [ ${#missing[@]} -gt 0 ]; then
  # Outside CI a missing PostgreSQL only narrows `make test` to SQLite (scripts/test.sh says so).
  apt_install "${missing[@]}" || [ "${CI:-}" != true ]
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,postgres]'
  touch "$stamp"
fi

if [ "$want_test" = 1 ]; then
  if ! node_ok; then
    echo "bootstrap: the browser client's tests need Node.js 20 or newer (found: $(node --version 2>&1));" \
      "Debian 12's own package is 18: install 20 from nodesource.com or nodejs.org" >&2
    exit 1
  fi
  # The example plugin (examples/rows_export), whose job kind the tests run end to end. Its dependency
  # on jobpulse is met by the editable install above, so pip leaves that one as it is.
  plugin_stamp=.venv/.installed-rows-export
  if [ ! -f "$plugin_stamp" ] || [ examples/rows_export/pyproject.toml -nt "$plugin_stamp" ] ||
     [ "$stamp" -nt "$plugin_stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e examples/rows_export
    touch "$plugin_stamp"
  fi
  js_stamp=clients/js/node_modules/.installed
  if [ ! -f "$js_stamp" ] || [ clients/js/package-lock.json -nt "$js_stamp" ]; then
    npm ci --prefix clients/js --no-audit --no-fund --loglevel=error
    touch "$js_stamp"
  fi
fi
