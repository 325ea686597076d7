#!/usr/bin/env bash
# Sentences/s of the local embedder next to sentence-transformers, same sentences and batch size.
# ST_PYTHON: a python with sentence-transformers and torch (not installed by the project: torch's
# PyPI wheel brings gigabytes of CUDA libraries); without it only our figure is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
install_model
export PG2QDRANT_TEST_MODEL="$MODEL_DIR"
out=$(mktemp)
BENCH_SENTENCES_OUT="$out" cargo bench --locked --bench embed
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
