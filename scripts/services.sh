#!/usr/bin/env bash
# Starts the local services the test suite needs, when they are not running. Sourced by test.sh.

# Waits up to $2 seconds for 127.0.0.1:$1 to accept connections.
wait_for_port() {
  local port=$1 limit=$2 i
  for ((i = 0; i < limit * 2; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

# RabbitMQ for the AMQP channel (5672) and its STOMP plugin for the STOMP channel (61613).
# Idempotent: a running broker is left alone; the plugin is enabled only when its port is closed.
ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ] && command -v apt-get >/dev/null 2>&1; then
      echo "== installing rabbitmq-server" >&2
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    fi
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "warning: rabbitmq-server is not installed: broker tests will skip (and fail under CI=true)" >&2
    return 0
  fi
  if ! wait_for_port 5672 1; then
    echo "== starting RabbitMQ" >&2
    rabbitmq-server -detached >/dev/null 2>&1 || true
    if ! wait_for_port 5672 60; then
      echo "warning: RabbitMQ did not open 127.0.0.1:5672 within 60 s" >&2
      return 0
    fi
    timeout 60 rabbitmq-diagnostics -q ping >/dev/null 2>&1 || true
  fi
  if ! wait_for_port 61613 1; then
    echo "== enabling RabbitMQ's STOMP plugin" >&2
    timeout 60 rabbitmq-plugins enable rabbitmq_stomp >/dev/null 2>&1 || true
    wait_for_port 61613 30 || echo "warning: RabbitMQ STOMP did not open 127.0.0.1:61613 within 30 s" >&2
  fi
}

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
  ensure_rabbitmq
}
