#!/usr/bin/env bash
# broker.sh DIR NODE_ID PORT CONTROLLER_PORT VOTERS [KEY=VALUE ...]: runs (exec) one Apache Kafka
# node in KRaft combined mode (broker and controller) on loopback, its data in DIR/data.
#
# VOTERS is the controller quorum, `1@127.0.0.1:CPORT1,2@127.0.0.1:CPORT2,...`: one entry for a
# single node, three for the tests' 3-broker cluster (replication factor 3, min.insync.replicas
# 2). KEY=VALUE lines are appended to the properties (later keys win): listeners for SASL/TLS,
# say. DIR is formatted on first start only, so a restart keeps the log; KAFKA_SCRAM, if set,
# is one `--add-scram` argument for that format (SCRAM-SHA-512=[name=...,password=...]).
# KAFKA_LIBS is the directory of the broker's jars (scripts/services.sh's install_kafka).
set -euo pipefail
dir=$1 node=$2 port=$3 cport=$4 voters=$5
shift 5
: "${KAFKA_LIBS:?KAFKA_LIBS names the broker jars (install_kafka in scripts/services.sh)}"
here=$(cd "$(dirname "$0")" && pwd)
nodes=$(( $(tr -cd , <<<"$voters" | wc -c) + 1 ))
isr=$(( nodes > 1 ? 2 : 1 ))
mkdir -p "$dir"
{
  cat <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$nodes
min.insync.replicas=$isr
offsets.topic.replication.factor=$nodes
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=$nodes
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$nodes
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
PROPS
  for kv in "$@"; do echo "$kv"; done
} >"$dir/server.properties"
java_opts=(-Xms128m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$here/log4j2.properties")
if [ ! -f "$dir/data/meta.properties" ]; then
  # One cluster id for every node of every test cluster: they never meet another cluster.
  java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format --ignore-formatted \
    -t MkU3OEVBNTcwNTJENDM2Qg -c "$dir/server.properties" ${KAFKA_SCRAM:+--add-scram "$KAFKA_SCRAM"} >/dev/null
fi
exec java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
