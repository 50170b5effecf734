#!/usr/bin/env bash
# Installs and starts the local services the test suite talks to for real, on a fresh Debian
# machine with nothing set up by hand:
#   PostgreSQL  127.0.0.1:5432  trust authentication on loopback, roles `postgres` and `root`
#   RabbitMQ    127.0.0.1:5672  AMQP, user guest/guest, with its STOMP plugin on 127.0.0.1:61613
#   NATS        127.0.0.1:4222  with JetStream (data in /var/lib/tocsin-test-nats)
# Missing Debian packages are installed (as root, `apt-get update` first); a service that already
# answers is left alone, so a second run costs a few seconds.
#
# Sourced by scripts/test.sh (which calls `ensure_services`), or run on its own:
#   scripts/services.sh            # install and start everything
#   scripts/services.sh status     # say what answers, change nothing
#
# TOCSIN_TEST_PG names another PostgreSQL server instead (a maintenance connection string); then
# PostgreSQL is neither installed nor started here.

# Whether 127.0.0.1:$1 accepts connections now.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

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

services_log() { echo "== services: $*" >&2; }
services_fail() {
  echo "error: services: $*" >&2
  return 1
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    services_fail "need root (or sudo) to run: $*"
  fi
}

# Installs the Debian packages named in "$@" (only those not installed yet). Services are not
# started by the packages' scripts (a policy-rc.d says no for the install's duration): without
# systemd they fail or hang, and each service is started below the way the tests need it.
install_packages() {
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || services_fail "apt-get not found; install by hand: ${missing[*]}" || return 1
  services_log "installing ${missing[*]} (Debian packages)"
  local policy=/usr/sbin/policy-rc.d own_policy=
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" && own_policy=1
  fi
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || rc=$?
  if [ $rc -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" \
      >/tmp/tocsin-services-apt.log 2>&1 || rc=$?
  fi
  [ -n "$own_policy" ] && as_root rm -f "$policy"
  if [ $rc -ne 0 ]; then
    tail -n 20 /tmp/tocsin-services-apt.log >&2 2>/dev/null
    services_fail "apt-get could not install ${missing[*]} (full log: /tmp/tocsin-services-apt.log)"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_answers() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null
}

# psql as the `postgres` superuser over the local socket (peer authentication, any hba).
pg_admin() {
  as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p 5432 -d postgres "$@"
}

# Trust on loopback for every user, ahead of Debian's scram lines: the tests connect as
# `postgres` (and `root`) without a password, as they did on the machines they were written on.
pg_trust_loopback() {
  local hba=$1 marker="# tocsin tests: trust on loopback"
  if grep -qF "$marker" "$hba"; then
    return 1
  fi
  services_log "PostgreSQL: trust authentication for 127.0.0.1 and ::1 in $hba"
  as_root sh -c "{ printf '%s\n' '$marker' \
      'host    all             all             127.0.0.1/32            trust' \
      'host    all             all             ::1/128                 trust'; cat '$hba'; } > '$hba.tocsin' \
    && cat '$hba.tocsin' > '$hba' && rm -f '$hba.tocsin'"
  return 0
}

ensure_postgres() {
  if [ -n "${TOCSIN_TEST_PG:-}" ]; then
    return 0
  fi
  install_packages postgresql postgresql-contrib || return 1
  local version cluster=main
  version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$version" ] || services_fail "no PostgreSQL server under /usr/lib/postgresql" || return 1
  if [ ! -d "/etc/postgresql/$version/$cluster" ]; then
    services_log "PostgreSQL $version: creating cluster $cluster"
    as_root pg_createcluster "$version" "$cluster" -p 5432 >/dev/null || services_fail "pg_createcluster $version $cluster" || return 1
  fi
  # Without systemd nothing creates the socket directory at boot.
  as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  local changed=0
  pg_trust_loopback "/etc/postgresql/$version/$cluster/pg_hba.conf" && changed=1
  if ! pg_answers; then
    services_log "PostgreSQL $version: starting cluster $cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start \
      || services_fail "could not start PostgreSQL $version/$cluster (see /var/log/postgresql/)" || return 1
  elif [ $changed = 1 ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" reload >/dev/null
  fi
  local i
  for i in $(seq 1 60); do
    pg_answers && break
    sleep 0.5
  done
  pg_answers || services_fail "PostgreSQL $version/$cluster does not accept connections on 127.0.0.1:5432" || return 1
  # `root` for tools run by hand as root (psql, createdb); `postgres` exists from initdb.
  if ! psql -X -qtA -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
    services_fail "PostgreSQL answers but refuses user postgres on 127.0.0.1 without a password (check pg_hba.conf)"
    return 1
  fi
  if [ "$(psql -X -qtA -h 127.0.0.1 -U postgres -d postgres -c "select count(*) from pg_roles where rolname = 'root'")" != 1 ]; then
    services_log "PostgreSQL: creating superuser role root"
    psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'create role root superuser login' >/dev/null || return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ with its STOMP plugin

ensure_rabbitmq() {
  if port_open 5672 && port_open 61613; then
    return 0
  fi
  install_packages rabbitmq-server || return 1
  # Enabled offline, before the node starts, so it comes up with STOMP on 61613 at once.
  if ! grep -qs rabbitmq_stomp /etc/rabbitmq/enabled_plugins; then
    services_log "RabbitMQ: enabling the STOMP plugin"
    as_root rabbitmq-plugins --offline enable rabbitmq_stomp >/dev/null \
      || services_fail "rabbitmq-plugins could not enable rabbitmq_stomp" || return 1
  fi
  if ! port_open 5672; then
    services_log "RabbitMQ: starting the node"
    # The /usr/sbin wrapper runs the node as user rabbitmq; -detached returns once it forked.
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    if ! wait_for_port 5672 90; then
      tail -n 20 /var/log/rabbitmq/*.log >&2 2>/dev/null
      services_fail "RabbitMQ did not open 127.0.0.1:5672 within 90 s (logs: /var/log/rabbitmq/)"
      return 1
    fi
  fi
  if ! wait_for_port 61613 30; then
    # A node started earlier without the plugin: enable it online.
    as_root rabbitmq-plugins enable rabbitmq_stomp >/dev/null 2>&1 || true
    wait_for_port 61613 30 || services_fail "RabbitMQ's STOMP plugin did not open 127.0.0.1:61613" || return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# NATS with JetStream

nats_jetstream_on() {
  # The monitoring endpoint says whether JetStream is enabled; without it, trust the port.
  if command -v curl >/dev/null 2>&1 && port_open 8222; then
    curl -fsS --max-time 2 http://127.0.0.1:8222/jsz 2>/dev/null | grep -q '"config"'
  else
    port_open 4222
  fi
}

ensure_nats() {
  if port_open 4222; then
    nats_jetstream_on || echo "warning: services: something listens on 127.0.0.1:4222 without JetStream" >&2
    return 0
  fi
  install_packages nats-server || return 1
  local dir=/var/lib/tocsin-test-nats
  as_root mkdir -p "$dir"
  services_log "NATS: starting nats-server with JetStream"
  # setsid -f: the server runs in a session of its own, outlives this script and the test run
  # that started it, and holds none of its output pipes.
  as_root setsid -f nats-server -a 127.0.0.1 -p 4222 -m 8222 -js -sd "$dir" \
    -l "$dir/nats-server.log" </dev/null >/dev/null 2>&1
  wait_for_port 4222 30 || services_fail "nats-server did not open 127.0.0.1:4222 (log: $dir/nats-server.log)" || return 1
  local i
  for i in $(seq 1 20); do
    nats_jetstream_on && return 0
    sleep 0.5
  done
  services_fail "nats-server answers on 4222 but JetStream is not enabled (log: $dir/nats-server.log)"
}

# ---------------------------------------------------------------------------------------------

ensure_services() {
  local t0=$SECONDS
  ensure_postgres || return 1
  ensure_rabbitmq || return 1
  ensure_nats || return 1
  services_log "PostgreSQL, RabbitMQ (AMQP + STOMP) and NATS (JetStream) answer ($((SECONDS - t0)) s)"
}

services_status() {
  local name port
  for name in postgres:5432 amqp:5672 stomp:61613 nats:4222; do
    port=${name#*:}
    if port_open "$port"; then echo "${name%%:*} 127.0.0.1:$port up"; else echo "${name%%:*} 127.0.0.1:$port down"; fi
  done
}

# Run as a script (not sourced): do it.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    status) services_status ;;
    "") ensure_services ;;
    *) echo "usage: $0 [status]" >&2; exit 2 ;;
  esac
fi
