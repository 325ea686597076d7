#!/usr/bin/env bash
# The test command: installs what is missing, starts PostgreSQL 15 and Qdrant on free loopback
# ports, runs every test (unit, property, integration against those services), stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_all

WORK=$(mktemp -d /tmp/pg2qdrant-test.XXXXXX)
chmod 755 "$WORK"
cleanup() { stop_qdrant "$WORK/qdrant"; stop_postgres "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT

echo "[test] building" >&2
cargo build --locked --all-targets
# The fuzz targets must keep building (a separate crate sharing target/); a short unguided smoke
# run of each here, the coverage-guided run is `cargo fuzz run pgoutput` (see README).
(cd fuzz && CARGO_TARGET_DIR=../target cargo build --locked --bins)
for t in pgoutput values; do ./target/debug/$t -runs=200000 2>&1 | tail -1; done

PG_PORT=$(free_port); QD_HTTP=$(free_port); QD_GRPC=$(free_port)
start_postgres "$WORK/pg" "$PG_PORT"
start_qdrant "$WORK/qdrant" "$QD_HTTP" "$QD_GRPC"

export PG2QDRANT_TEST_PG="postgres://postgres@127.0.0.1:$PG_PORT"
export PG2QDRANT_TEST_QDRANT_GRPC="http://127.0.0.1:$QD_GRPC"
export PG2QDRANT_TEST_QDRANT_HTTP="http://127.0.0.1:$QD_HTTP"
export PG2QDRANT_TEST_QDRANT_BIN="$QDRANT_BIN"
export PG2QDRANT_TEST_WORK="$WORK"
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-4}" "$@"
