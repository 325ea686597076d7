#!/usr/bin/env bash
# Sentences/s of the local embedder next to sentence-transformers, same sentences and batch size,
# then end to end: the same 1 024 sentences inserted into seed 004's chat_messages and streamed by
# pg2qdrant with config/chat_history.toml (embedding on) until every point is in Qdrant, as rows/s
# and as a ratio of the embedder alone.
# ST_PYTHON: a python with sentence-transformers and torch (not installed by the project: torch's
# PyPI wheel brings gigabytes of CUDA libraries); without it only our figures are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_model
export PG2QDRANT_TEST_MODEL="$MODEL_DIR"
out=$(mktemp)
alone=$(BENCH_SENTENCES_OUT="$out" cargo bench --locked --bench embed | tee /dev/stderr | grep -o '[0-9]* sentences/s' | cut -d' ' -f1)
if [ -n "${ST_PYTHON:-}" ]; then
  "$ST_PYTHON" - "$MODEL_DIR" "$out" "${BENCH_THREADS:-2}" <<'PY'
import sys, time, torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads(int(sys.argv[3]))
m = SentenceTransformer(sys.argv[1], device="cpu")
s = open(sys.argv[2]).read().split("\n")
m.encode(s[:32], batch_size=32)
t = time.time()
m.encode(s, batch_size=32)
print("sentence-transformers %s (torch %s, %s threads): %.0f sentences/s" % (
    __import__("sentence_transformers").__version__, torch.__version__, sys.argv[3], len(s) / (time.time() - t)))
PY
fi
rm -f "$out"

# End to end through the connector (release build, services like the tests').
cargo build --locked --release --bin pg2qdrant
start_services bench-embed
PSQL="psql -X -q -h 127.0.0.1 -p ${PG2QDRANT_TEST_PG##*:} -U postgres"
$PSQL -d postgres -c "CREATE DATABASE chatbot"
$PSQL -d chatbot -f sql/chat_schema.sql
export PG2QDRANT__SOURCE__URL="$PG2QDRANT_TEST_PG/chatbot" PG2QDRANT__QDRANT__URL="$PG2QDRANT_TEST_QDRANT_GRPC"
export PG2QDRANT__CHECKPOINT__PATH="$WORK/cp" PG2QDRANT__DEAD_LETTER__PATH="$WORK/dl" PG2QDRANT__METRICS__ADDR=""
export PG2QDRANT__EMBEDDERS__MINILM__PATH="$MODEL_DIR" PG2QDRANT__EMBEDDERS__MINILM__THREADS="${BENCH_THREADS:-2}"
./target/release/pg2qdrant run --config config/chat_history.toml 2>"$WORK/run.log" &
PID=$!
on_exit 'kill -INT $PID 2>/dev/null; wait $PID 2>/dev/null' 
for _ in $(seq 1 100); do
  [ "$($PSQL -d chatbot -Atc "SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid")" = 1 ] && break; sleep 0.1
done
$PSQL -d chatbot -c "INSERT INTO chat_sessions VALUES ('a1b2c3d4-0000-4000-8000-000000000001', 'u')"
count() { curl -fsS -X POST "$PG2QDRANT_TEST_QDRANT_HTTP/collections/chat_history/points/count" -H 'content-type: application/json' -d '{"exact":true}' | python3 -c "import sys,json; print(json.load(sys.stdin)['result']['count'])"; }
start=$(date +%s.%N)
# The sentences of benches/embed.rs (sentences()), built in SQL.
$PSQL -d chatbot -c "INSERT INTO chat_messages (session_id, role, content) SELECT 'a1b2c3d4-0000-4000-8000-000000000001', 'user', \
  (ARRAY['The deploy','My order','The meeting','Our database','The new feature','This invoice'])[1 + g % 6] || ' ' || \
  (ARRAY['failed again after','was moved to','needs a review before','looks fine since','broke during'])[1 + (g / 6) % 5] || ' ' || \
  (ARRAY['the weekend','the last migration','Tuesday''s release','the outage','lunch','the customer call'])[1 + (g / 7) % 6] || \
  ' (ticket ' || g || '); can someone take a look?' FROM generate_series(0, 1023) g"
until [ "$(count)" = 1024 ]; do sleep 0.05; done
end=$(date +%s.%N)
python3 -c "s=$end-$start; print('end to end, chat_messages with embedding on: %.0f rows/s (1024 rows, %.1f s); / embedder alone: %.2f (aim >= 0.9)' % (1024/s, s, 1024/s/$alone))"
