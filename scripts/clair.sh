#!/usr/bin/env bash
# Installs a released Clair v4 (`clair` and `clairctl`) from the Go module proxy into the user's
# cache, once, and prints the directory holding the two binaries:
#
#   scripts/clair.sh            # → ~/.cache/tocsin-test-tools/clair-v4.9.0/bin
#   CLAIR_VERSION=v4.9.1 scripts/clair.sh
#   CLAIRCORE_VERSION=v1.5.54 scripts/clair.sh   # → …/clair-v4.9.0-claircore-v1.5.54/bin
#
# CLAIRCORE_VERSION builds the same Clair against a newer claircore (the library that holds the
# matchers, updaters and indexer scanners): the only way to a newer matcher here, since the
# module proxy serves no Clair release after v4.9.0.
#
# Nothing of Clair is committed: the tests that run a real Clair beside tocsin call this first.
# `go install github.com/quay/clair/v4/cmd/clair@v4.9.0` does not work through this machine's
# module proxy: it asks the proxy for the module's version list (to look for a deprecation
# notice) and the proxy refuses that list (403), although it serves v4.9.0 itself. So the
# commands are built from a throw-away module that requires exactly that version, which needs
# only the versions Clair's own go.mod pins (checked against sum.golang.org as usual).
# Concurrent callers wait on a lock while one builds. Exit status 3: no Go toolchain.
set -euo pipefail

VERSION="${CLAIR_VERSION:-v4.9.0}"
CORE="${CLAIRCORE_VERSION:-}"
tools="${TOCSIN_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tocsin-test-tools}"
dest="$tools/clair-$VERSION${CORE:+-claircore-$CORE}"
bin="$dest/bin"

if [ -x "$bin/clair" ] && [ -x "$bin/clairctl" ]; then
  echo "$bin"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "clair.sh: no Go toolchain (go) on PATH" >&2
  exit 3
fi
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if [ -x "$bin/clair" ] && [ -x "$bin/clairctl" ]; then
  echo "$bin"
  exit 0
fi
build="$dest/build"
rm -rf "$build"
mkdir -p "$build"
cd "$build"
echo "clair.sh: building Clair $VERSION${CORE:+ with claircore $CORE} (clair, clairctl) with $(go version)" >&2
go mod init tocsin.test/clair-build >/dev/null 2>&1
go mod edit -require="github.com/quay/clair/v4@$VERSION"
if [ -n "$CORE" ]; then
  go mod edit -require="github.com/quay/claircore@$CORE"
fi
# Module sources and build cache (about 2.5 GB) live in the build directory and go with it: only
# the two binaries stay on the machine.
GOMODCACHE="$build/mod" GOCACHE="$build/cache" GOFLAGS="-mod=mod -modcacherw" \
  go build -o "$build/out/" github.com/quay/clair/v4/cmd/clair github.com/quay/clair/v4/cmd/clairctl >&2
mkdir -p "$bin"
mv "$build/out/clair" "$build/out/clairctl" "$bin/"
rm -rf "$build"
echo "$bin"
