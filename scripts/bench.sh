#!/usr/bin/env bash
# The benchmark: starts the services like the tests, then runs benches/e2e.rs (release build).
# BENCH_ROWS (default 100000) and BENCH_BATCH (default 256) tune it. Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_all
WORK=$(mktemp -d /tmp/pg2qdrant-bench.XXXXXX)
chmod 755 "$WORK"
cleanup() { stop_qdrant "$WORK/qdrant"; stop_postgres "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
cargo build --locked --release --bench e2e
PG_PORT=$(free_port); QD_HTTP=$(free_port); QD_GRPC=$(free_port)
start_postgres "$WORK/pg" "$PG_PORT"
start_qdrant "$WORK/qdrant" "$QD_HTTP" "$QD_GRPC"
export PG2QDRANT_TEST_PG="postgres://postgres@127.0.0.1:$PG_PORT"
export PG2QDRANT_TEST_QDRANT_GRPC="http://127.0.0.1:$QD_GRPC"
export PG2QDRANT_TEST_WORK="$WORK"
export PG2QDRANT_LOG=warn
cargo bench --locked --bench e2e
