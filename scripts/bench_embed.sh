#!/usr/bin/env bash
# The local embedder measured, in one run (the machine is shared: quote the ratios):
#  1. texts/s of pg2qdrant's local embedder (f32 and int8; int8's quality) on two corpora, the
#     uniform chat-sized sentences and mixed-length messages of 3-300 words (benches/embed.rs);
#  2. with ST=1, sentence-transformers on the same texts, threads and batch size, installed on
#     demand into a virtual environment under ~/.cache/pg2qdrant (torch's PyPI wheel is several
#     GB, so not by default), and the ratios;
#  3. end to end: the same texts as existing seed-004 chat_messages, copied and embedded by
#     `pg2qdrant run` with config/chat_history.toml and snapshot = initial_only until it exits, as
#     rows/s, CPU µs per row of the connector, and the ratio to the embedder alone on the same rows
#     (timed just before the run, in writer batches of 256).
# BENCH_THREADS (2), BENCH_SENTENCES (1024; the mixed corpus is a quarter of it), BENCH_E2E_REPEAT
# (4: end to end copies each corpus this many times over).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_model
install_onnxruntime
export PG2QDRANT_TEST_MODEL="$MODEL_DIR"
THREADS="${BENCH_THREADS:-2}"
corpus=$(mktemp)
ours=$(mktemp)
BENCH_SENTENCES_OUT="$corpus" BENCH_THREADS="$THREADS" cargo bench --locked --bench embed | tee "$ours"
figure() { grep "^pg2qdrant $1 $2:" "$ours" | grep -o '[0-9.]* texts/s' | cut -d' ' -f1; }

if [ "${ST:-0}" = 1 ]; then
  ST_VENV="$CACHE_DIR/sentence-transformers"
  if [ ! -x "$ST_VENV/bin/python" ] || ! "$ST_VENV/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
    log "installing sentence-transformers 6.3.0 and torch 2.15.0 into $ST_VENV (PyPI; several GB)"
    python3 -m venv "$ST_VENV"
    "$ST_VENV/bin/pip" install --quiet sentence-transformers==6.3.0 torch==2.15.0 >&2
  fi
  st=$(mktemp)
  HF_HUB_OFFLINE=1 "$ST_VENV/bin/python" - "$MODEL_DIR" "$corpus" "$THREADS" 2>/dev/null <<'PY' | tee "$st"
import sys, time, torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads(int(sys.argv[3]))
m = SentenceTransformer(sys.argv[1], device="cpu")
for name, path in (("uniform", sys.argv[2]), ("mixed", sys.argv[2] + ".mixed")):
    s = open(path).read().split("\n")
    m.encode(s[:32], batch_size=32)  # warm up
    t = time.time()
    m.encode(s, batch_size=32)
    print("sentence-transformers %s: %.1f texts/s (sentence-transformers %s, torch %s, %s threads, batch 32)" % (
        name, len(s) / (time.time() - t), __import__("sentence_transformers").__version__, torch.__version__, sys.argv[3]))
PY
  for corpus_name in uniform mixed; do
    theirs=$(grep "^sentence-transformers $corpus_name:" "$st" | grep -o '[0-9.]* texts/s' | cut -d' ' -f1)
    python3 -c "print('ratio to sentence-transformers, $corpus_name: f32 %.2fx, int8 %.2fx (aim >= 1.0, 1.5)' % ($(figure f32 $corpus_name)/$theirs, $(figure int8 $corpus_name)/$theirs))"
  done
  rm -f "$st"
fi

# End to end through the connector (release build, services like the tests').
cargo build --locked --release --bin pg2qdrant
start_services bench-embed
PSQL="psql -X -q -h 127.0.0.1 -p ${PG2QDRANT_TEST_PG##*:} -U postgres"
export PG2QDRANT__QDRANT__URL="$PG2QDRANT_TEST_QDRANT_GRPC" PG2QDRANT__METRICS__ADDR=""
export PG2QDRANT__SOURCE__SNAPSHOT=initial_only
export PG2QDRANT__EMBEDDERS__MINILM__PATH="$MODEL_DIR" PG2QDRANT__EMBEDDERS__MINILM__THREADS="$THREADS"
# Each corpus REPEAT times (distinct rows, each embedded): the process's start (model load,
# slot, collection) is in the time, spread over enough rows.
REPEAT="${BENCH_E2E_REPEAT:-4}"
for corpus_name in uniform mixed; do
  file="$corpus"; [ "$corpus_name" = mixed ] && file="$corpus.mixed"
  rows=$(( ($(wc -l < "$file") + 1) * REPEAT ))
  db="chat_$corpus_name"
  $PSQL -d postgres -c "CREATE DATABASE $db"
  $PSQL -d "$db" -f sql/chat_schema.sql
  $PSQL -d "$db" -c "INSERT INTO chat_sessions VALUES ('a1b2c3d4-0000-4000-8000-000000000001', 'u')"
  $PSQL -d "$db" -c "CREATE TEMP TABLE t (content text)" -c "\\copy t FROM '$file'" \
    -c "INSERT INTO chat_messages (session_id, role, content) SELECT 'a1b2c3d4-0000-4000-8000-000000000001', 'user', content FROM t, generate_series(1, $REPEAT)"
  # The embedder alone on exactly these rows, in their order and in writer batches, just before
  # the run: the ratio compares the two under the same load of the machine.
  $PSQL -d "$db" -c "\\copy (SELECT content FROM chat_messages ORDER BY id) TO '$WORK/rows_$corpus_name'"
  alone_line=$(BENCH_TEXTS="$WORK/rows_$corpus_name" BENCH_THREADS="$THREADS" cargo bench --locked --bench embed 2>/dev/null | grep '^pg2qdrant f32 alone:')
  echo "$corpus_name, $alone_line ($rows rows)"
  alone=$(echo "$alone_line" | grep -o '[0-9.]* texts/s' | cut -d' ' -f1)
  cpu_alone=$(echo "$alone_line" | grep -o '[0-9.]* us CPU' | cut -d' ' -f1)
  curl -fsS -X DELETE "$PG2QDRANT_TEST_QDRANT_HTTP/collections/chat_history" >/dev/null || true
  PG2QDRANT__SOURCE__URL="$PG2QDRANT_TEST_PG/$db" PG2QDRANT__SOURCE__SLOT="bench_$corpus_name" \
  PG2QDRANT__CHECKPOINT__PATH="$WORK/cp_$corpus_name" PG2QDRANT__DEAD_LETTER__PATH="$WORK/dl_$corpus_name" \
    /usr/bin/time -f '%e %U %S' -o "$WORK/time_$corpus_name" \
    ./target/release/pg2qdrant run --config config/chat_history.toml 2>"$WORK/run_$corpus_name.log" \
    || { tail -20 "$WORK/run_$corpus_name.log"; exit 1; }
  points=$(curl -fsS -X POST "$PG2QDRANT_TEST_QDRANT_HTTP/collections/chat_history/points/count" -H 'content-type: application/json' -d '{"exact":true}' | python3 -c "import sys,json; print(json.load(sys.stdin)['result']['count'])")
  read -r wall user sys < "$WORK/time_$corpus_name"
  # The copy's own rate, from its log line (without the process's start and the index restore).
  copy=$(grep -o 'copy finished.*rows_per_s="[0-9.]*"' "$WORK/run_$corpus_name.log" | grep -o '[0-9.]*"$' | tr -d '"')
  python3 -c "
rows, points, wall, cpu, alone, copy, cpu_alone = $rows, $points, $wall, $user + $sys, $alone, ${copy:-0}, $cpu_alone
print('end to end, %s: %d rows copied and embedded (%d points) in %.1f s from process start to exit: %.1f rows/s (/ embedder alone on these rows: %.2f, aim >= 0.9); the copy itself %.0f rows/s (%.2f); %.0f us CPU/row of pg2qdrant (embedder alone: %.0f, x%.2f)' % (
    '$corpus_name', rows, points, wall, rows / wall, rows / wall / alone, copy, copy / alone, cpu / rows * 1e6, cpu_alone, cpu / rows * 1e6 / cpu_alone))"
done
rm -f "$corpus" "$corpus.mixed" "$ours"
