#!/usr/bin/env bash
# The test command: installs what is missing, starts PostgreSQL 15 and Qdrant on free loopback
# ports, runs every test (unit, property, integration against those services), stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_all
install_kafka

echo "[test] building" >&2
cargo build --locked --all-targets
# The fuzz targets must keep building (a separate crate sharing target/); a short unguided smoke
# run of each here, the coverage-guided run is `cargo fuzz run pgoutput` (see docs/design.md, Development).
(cd fuzz && CARGO_TARGET_DIR=../target cargo build --locked --bins)
# (values tries every decoder on each input: fewer runs for about the same time.)
for t in pgoutput:2000000 values:500000; do ./target/debug/${t%:*} -runs=${t#*:} -seed=1 -artifact_prefix=target/ 2>&1 | tail -1; done

start_services test kafka
# Every integration test runs twice: values in binary form, then in text form (source.format).
echo "[test] unit, property and integration tests; source.format = binary" >&2
PG2QDRANT_TEST_FORMAT=binary cargo test --locked --lib --bins --tests -- --test-threads="${TEST_THREADS:-4}" "$@"
echo "[test] integration tests again; source.format = text" >&2
PG2QDRANT_TEST_FORMAT=text cargo test --locked --test main -- --test-threads="${TEST_THREADS:-4}" "$@"

# Nothing the tests started may outlive them.
stop_services
left=$(services_left)
if [ -n "$left" ]; then
  echo "[test] service processes still running after the stop: $left" >&2
  ps -o pid,args -p $left >&2 || true
  exit 1
fi
echo "[test] every service process stopped" >&2
