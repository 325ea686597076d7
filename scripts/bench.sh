#!/usr/bin/env bash
# The benchmark: starts the services like the tests, then runs benches/e2e.rs (release build).
# BENCH_ROWS (default 100000) and BENCH_BATCH (default 256) tune it; BENCH_ONLY=latency runs the
# commit → visible phase alone; BENCH_ONLY=kafka the Kafka fan-out bench (benches/kafka.rs, default
# 5 000 rows) alone; BENCH_PARALLEL sets qdrant.parallel in the Kafka bench; BENCH_ONLY=peer
# pg2qdrant next to Debezium Server's Qdrant sink (benches/peer.rs, default 10 000 rows; fetches
# Debezium Server once, ~780 MB); BENCH_ONLY=chunking fixed windows next to content-defined chunks
# (benches/chunking.rs: retrieval hit@1/@5 and chunks embedded again per edit; BENCH_DOCS,
# BENCH_CHUNK_TOKENS). Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_all
BENCH=e2e
if [ "${BENCH_ONLY:-}" = chunking ]; then
  # No services: the chunks are embedded and searched in-process.
  export PG2QDRANT_TEST_MODEL="$MODEL_DIR"
  exec cargo bench --locked --bench chunking
fi
if [ "${BENCH_ONLY:-}" = kafka ]; then install_kafka; BENCH=kafka; fi
if [ "${BENCH_ONLY:-}" = peer ]; then install_debezium; BENCH=peer; fi
cargo build --locked --release --bench "$BENCH" --bin pg2qdrant
if [ "$BENCH" = kafka ]; then start_services bench kafka; else start_services bench; fi
export PG2QDRANT_LOG=warn
cargo bench --locked --bench "$BENCH"
