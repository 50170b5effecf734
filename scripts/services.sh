#!/usr/bin/env bash
# Starts the local services the test suite needs, when they are not running. Sourced by test.sh.

# Nothing yet needs an external service: the embedded store is the default. Later channels and
# stores add their services here (PostgreSQL: pg_ctlcluster …; RabbitMQ: rabbitmq-server -detached).
ensure_services() {
  :
}
