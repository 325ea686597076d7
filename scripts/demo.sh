#!/usr/bin/env bash
# The demo: installs what is missing (PostgreSQL 15, Qdrant, the all-MiniLM-L6-v2 model), starts a
# local PostgreSQL and Qdrant, creates the chat schema of seed 004 (sql/chat_schema.sql: no
# embedding column), runs pg2qdrant with config/chat_history.toml (env overrides only: it embeds
# each message's content in-process), writes sample chat messages, shows them arriving in Qdrant
# and a semantic search with a question none of them contains, read-your-writes (insert, wait,
# search finds it), a hybrid query (dense + BM25 keywords), verify/repair and the sync status. DEMO_KEEP=1 keeps it running.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_all
command -v jq >/dev/null || apt_install jq


echo "== building pg2qdrant"
cargo build --locked --bin pg2qdrant
start_services demo
PID=
on_exit 'if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi'

PG_PORT=${PG2QDRANT_TEST_PG##*:}; QD_HTTP=${PG2QDRANT_TEST_QDRANT_HTTP##*:}; QD_GRPC=${PG2QDRANT_TEST_QDRANT_GRPC##*:}
METRICS=$(free_port)
PSQL="psql -X -q -h 127.0.0.1 -p $PG_PORT -U postgres"
$PSQL -d postgres -c "CREATE DATABASE chatbot"
$PSQL -d chatbot -f sql/chat_schema.sql

export PG2QDRANT__SOURCE__URL="postgres://postgres@127.0.0.1:$PG_PORT/chatbot"
export PG2QDRANT__QDRANT__URL="http://127.0.0.1:$QD_GRPC"
export PG2QDRANT__CHECKPOINT__PATH="$WORK/chat.checkpoint"
export PG2QDRANT__DEAD_LETTER__PATH="$WORK/chat.deadletter.jsonl"
export PG2QDRANT__METRICS__ADDR="127.0.0.1:$METRICS"
export PG2QDRANT__EMBEDDERS__MINILM__PATH="$MODEL_DIR"
QD="http://127.0.0.1:$QD_HTTP"

echo "== pg2qdrant check"
./target/debug/pg2qdrant check --config config/chat_history.toml
echo "== pg2qdrant run (log: $WORK/pg2qdrant.log)"
./target/debug/pg2qdrant run --config config/chat_history.toml 2>"$WORK/pg2qdrant.log" &
PID=$!
# Streaming once a walsender holds the slot (an "active" slot may still be being created).
for _ in $(seq 1 100); do
  [ "$($PSQL -d chatbot -Atc "SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid")" = 1 ] && break; sleep 0.1
done

count() { curl -fsS -X POST "$QD/collections/chat_history/points/count" -H 'content-type: application/json' -d '{"exact":true}' | jq .result.count; }
wait_count() { for _ in $(seq 1 100); do [ "$(count)" = "$1" ] && return 0; sleep 0.1; done; echo "expected $1 points, have $(count)"; return 1; }

echo "== inserting 2 sessions, 6 messages in PostgreSQL (text only: pg2qdrant embeds the content)"
$PSQL -d chatbot <<SQL
INSERT INTO chat_sessions (session_id, user_id) VALUES
  ('a1b2c3d4-0000-4000-8000-000000000001', 'alice'), ('a1b2c3d4-0000-4000-8000-000000000002', 'bob');
INSERT INTO chat_messages (session_id, role, content)
SELECT s::uuid, r, c FROM (VALUES
  ('a1b2c3d4-0000-4000-8000-000000000001', 'user', 'How do I keep Qdrant in sync with Postgres?'),
  ('a1b2c3d4-0000-4000-8000-000000000001', 'assistant', 'Stream the WAL through a logical replication slot.'),
  ('a1b2c3d4-0000-4000-8000-000000000001', 'user', 'What happens if Qdrant is down?'),
  ('a1b2c3d4-0000-4000-8000-000000000001', 'assistant', 'Nothing is acknowledged until the write is durable; it retries.'),
  ('a1b2c3d4-0000-4000-8000-000000000002', 'user', 'Can deletes cascade?'),
  ('a1b2c3d4-0000-4000-8000-000000000002', 'assistant', 'Yes: cascaded deletes arrive as row deletes.')) v(s, r, c);
SQL
wait_count 6
echo "== Qdrant collection chat_history now holds $(count) points; message 1:"
curl -fsS "$QD/collections/chat_history/points/1" | jq -c '.result | {id, payload: (.payload | del(._pg2qdrant)), vector_len: (.vector[""] | length), keywords: (.vector.keywords.indices | length), embedded: .payload._pg2qdrant.embedded}'
QUESTION="Is anything lost while the vector database is offline?"
echo "== semantic search in alice's session for: $QUESTION"
VEC=$(./target/debug/pg2qdrant embed --config config/chat_history.toml "$QUESTION")
curl -fsS -X POST "$QD/collections/chat_history/points/query" -H 'content-type: application/json' \
  -d "{\"query\": $VEC, \"limit\": 2, \"with_payload\": [\"content\", \"role\"], \"filter\": {\"must\": [{\"key\": \"session_id\", \"match\": {\"value\": \"a1b2c3d4-0000-4000-8000-000000000001\"}}]}}" \
  | jq -c '.result.points[] | {id, score, role: .payload.role, content: .payload.content}'
echo "== read-your-writes: insert a message, wait for its commit position, search finds it at once"
LSN=$($PSQL -d chatbot -Atc "INSERT INTO chat_messages (session_id, role, content) VALUES ('a1b2c3d4-0000-4000-8000-000000000001', 'user', 'My order 7731 never arrived') RETURNING 1" -c "SELECT pg_current_wal_insert_lsn()" | tail -1)
curl -fsS "http://127.0.0.1:$METRICS/wait?lsn=$LSN&timeout_ms=10000"
VEC=$(./target/debug/pg2qdrant embed --config config/chat_history.toml "Where is my package?")
curl -fsS -X POST "$QD/collections/chat_history/points/query" -H 'content-type: application/json' \
  -d "{\"query\": $VEC, \"limit\": 1, \"with_payload\": [\"content\"]}" | jq -c '.result.points[] | {id, content: .payload.content}'
echo "== hybrid search for a ticket number: the dense vector ranks messages about tickets;"
echo "   the BM25 vector (keywords) matches the exact number; reciprocal rank fusion of both finds it"
Q="Status of ticket TCK-48213?"
$PSQL -d chatbot -c "INSERT INTO chat_messages (session_id, role, content) VALUES ('a1b2c3d4-0000-4000-8000-000000000002', 'assistant', 'Escalated as TCK-48213, the logs are attached.'), ('a1b2c3d4-0000-4000-8000-000000000002', 'assistant', 'Ticket TCK-51002 is closed.'), ('a1b2c3d4-0000-4000-8000-000000000002', 'user', 'What happened to my ticket? I opened it yesterday.')"
wait_count 10
VEC=$(./target/debug/pg2qdrant embed --config config/chat_history.toml "$Q")
SPARSE=$(./target/debug/pg2qdrant embed --config config/chat_history.toml --sparse "$Q")
query() { curl -fsS -X POST "$QD/collections/chat_history/points/query" -H 'content-type: application/json' -d "$1" | jq -c '.result.points[] | {id, content: .payload.content}'; }
echo "-- $Q  (dense only, top 2):"
query "{\"query\": $VEC, \"limit\": 2, \"with_payload\": [\"content\"]}"
echo "-- keywords only (pg2qdrant embed --sparse: $SPARSE), top 1:"
query "{\"query\": $SPARSE, \"using\": \"keywords\", \"limit\": 1, \"with_payload\": [\"content\"]}"
echo "-- hybrid (dense + keywords, fused with RRF), top 2:"
query "{\"prefetch\": [{\"query\": $VEC, \"limit\": 10}, {\"query\": $SPARSE, \"using\": \"keywords\", \"limit\": 10}], \"query\": {\"fusion\": \"rrf\"}, \"limit\": 2, \"with_payload\": [\"content\"]}"
$PSQL -d chatbot -c "DELETE FROM chat_messages WHERE id > 6"
wait_count 6
echo "== editing message 2's text (embedded again), message 1's role only (not embedded again), deleting bob's session (its messages cascade)"
$PSQL -d chatbot -c "UPDATE chat_messages SET content = 'Stream the WAL (edited).' WHERE id = 2; UPDATE chat_messages SET role = 'human' WHERE id = 1; DELETE FROM chat_sessions WHERE user_id = 'bob';"
wait_count 4
curl -fsS "$QD/collections/chat_history/points/2" | jq -c '.result.payload.content'
echo "== Qdrant holds $(count) points, PostgreSQL $($PSQL -d chatbot -Atc 'SELECT count(*) FROM chat_messages') rows"
echo "== pg2qdrant verify: every row against its point"
./target/debug/pg2qdrant verify --config config/chat_history.toml || true
echo "== a point edited behind the connector's back is found, and repaired:"
curl -fsS -X POST "$QD/collections/chat_history/points/payload?wait=true" -H 'content-type: application/json' \
  -d '{"payload": {"content": "tampered"}, "points": [1]}' >/dev/null
./target/debug/pg2qdrant verify --config config/chat_history.toml || true
./target/debug/pg2qdrant verify --config config/chat_history.toml --repair
echo "== metrics (http://127.0.0.1:$METRICS/metrics):"
curl -fsS "http://127.0.0.1:$METRICS/metrics" | grep -E '^pg2qdrant_(changes|last_acked|dead|snapshot_state|verify|embed|lag_seconds|replication_lag|slot_|ready|up)' || true
echo "== readiness (http://127.0.0.1:$METRICS/readyz):"
curl -sS "http://127.0.0.1:$METRICS/readyz" || true
echo "== pg2qdrant status (exit 0: ready and in sync)"
./target/debug/pg2qdrant status --config config/chat_history.toml || true
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  echo "== running; psql: $PSQL -d chatbot ; Qdrant: $QD ; Ctrl-C to stop"
  wait "$PID"
fi
echo "== demo done"
