#!/usr/bin/env bash
# Runs schemathesis (`st`), pinned, from a virtual environment in the user's cache directory,
# installing it there first when missing or at another version:
#
#   scripts/schemathesis.sh run --checks all http://127.0.0.1:6060/openapi.json
#   scripts/schemathesis.sh --install-only
#
# The environment is $TOCSIN_TOOLS_DIR/venv (default ~/.cache/tocsin-test-tools/venv) and is
# reused by later runs. Concurrent callers wait on a lock while one installs.
# Exit status 3: python3 or its venv/pip is unavailable (callers may skip on it).
set -euo pipefail

VERSION=4.32.5
tools="${TOCSIN_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tocsin-test-tools}"
venv="$tools/venv"

installed() {
  [ -x "$venv/bin/st" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" = "$VERSION" ]
}

# The newest Python 3 that runs (3.9 or later): CPython 3.11's `ast` module has a threading bug
# (gh-106905) that hypothesis can trip over, so a newer one is preferred when installed.
python() {
  for p in python3.13 python3.12 python3.11 python3.10 python3; do
    if "$p" -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

install() {
  local py
  if ! py="$(python)"; then
    echo "schemathesis.sh: no python3 (3.9 or later) found" >&2
    exit 3
  fi
  mkdir -p "$tools"
  exec 9>"$tools/.lock"
  flock 9
  installed && return 0
  echo "schemathesis.sh: installing schemathesis $VERSION into $venv" >&2
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >&2; then
    echo "schemathesis.sh: python3 -m venv failed (is python3-venv installed?)" >&2
    rm -rf "$venv"
    exit 3
  fi
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "schemathesis==$VERSION" >&2; then
    echo "schemathesis.sh: pip install schemathesis==$VERSION failed" >&2
    rm -rf "$venv"
    exit 3
  fi
  exec 9>&-
}

installed || install
if [ "${1:-}" = "--install-only" ]; then
  "$venv/bin/st" --version
  exit 0
fi
exec "$venv/bin/st" "$@"
