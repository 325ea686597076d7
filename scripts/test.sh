#!/usr/bin/env bash
# The test command: installs what is missing, starts PostgreSQL 15 and Qdrant on free loopback
# ports, runs every test (unit, property, integration against those services), stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_all

echo "[test] building" >&2
cargo build --locked --all-targets
# The fuzz targets must keep building (a separate crate sharing target/); a short unguided smoke
# run of each here, the coverage-guided run is `cargo fuzz run pgoutput` (see README).
(cd fuzz && CARGO_TARGET_DIR=../target cargo build --locked --bins)
for t in pgoutput values; do ./target/debug/$t -runs=2000000 -seed=1 -artifact_prefix=target/ 2>&1 | tail -1; done

start_services test
cargo test --locked --lib --bins --tests -- --test-threads="${TEST_THREADS:-4}" "$@"
