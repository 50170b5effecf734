#!/usr/bin/env bash
# Prints the python of a virtual environment holding kmock (pinned; PyPI), the Kubernetes API
# emulator the `tocsin kube` tests run, installing it first when missing:
#
#   "$(scripts/kmock.sh)" crates/tocsin/tests/kube/emulator.py SEED.json
#
# The environment is $TOCSIN_TOOLS_DIR/kmock-venv (default ~/.cache/tocsin-test-tools/kmock-venv),
# apart from schemathesis' (their aiohttp pins differ). Concurrent callers wait on a lock while
# one installs. Exit status 3: no python3.11 or later, or its venv/pip is unavailable.
set -euo pipefail

VERSION=0.8
tools="${TOCSIN_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tocsin-test-tools}"
venv="$tools/kmock-venv"

installed() {
  [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kmock"))' 2>/dev/null)" = "$VERSION" ]
}

if ! installed; then
  py=
  for p in python3.13 python3.12 python3.11 python3; do
    if "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      py="$p"
      break
    fi
  done
  if [ -z "$py" ]; then
    echo "kmock.sh: kmock needs python 3.11 or later" >&2
    exit 3
  fi
  mkdir -p "$tools"
  exec 9>"$tools/.kmock.lock"
  flock 9
  if ! installed; then
    echo "kmock.sh: installing kmock $VERSION into $venv" >&2
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" >&2 ||
      ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kmock==$VERSION" >&2; then
      echo "kmock.sh: installing kmock==$VERSION failed" >&2
      rm -rf "$venv"
      exit 3
    fi
  fi
  exec 9>&-
fi
echo "$venv/bin/python"
