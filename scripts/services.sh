#!/usr/bin/env bash
# Starts the local services the test suite needs, when they are not running. Sourced by test.sh.

# PostgreSQL for the PostgreSQL store's tests (each test creates and drops its own database on
# it). TOCSIN_TEST_PG names another server instead (a maintenance connection string); then
# nothing is started here.
ensure_postgres() {
  if [ -n "${TOCSIN_TEST_PG:-}" ]; then
    return 0
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    return 0
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
    echo "error: PostgreSQL is not running on 127.0.0.1:5432 and no cluster is installed" >&2
    echo "       (apt-get install postgresql, or set TOCSIN_TEST_PG to a server)" >&2
    return 1
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "== starting PostgreSQL $version (cluster main)"
  if ! pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
    echo "error: could not start PostgreSQL $version/main (see /var/log/postgresql/)" >&2
    return 1
  fi
  local i
  for i in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p 5432; then
      return 0
    fi
    sleep 0.5
  done
  echo "error: PostgreSQL $version/main started but does not accept connections on 127.0.0.1:5432" >&2
  return 1
}

ensure_services() {
  ensure_postgres
}
