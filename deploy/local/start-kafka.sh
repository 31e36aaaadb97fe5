#!/usr/bin/env bash
# Runs a single-node Apache Kafka in KRaft mode (one process that is both the
# broker and the controller), listening on 127.0.0.1 only, in the foreground.
# The script ends by exec-ing the JVM, so the pid of this script is the pid of
# the server: stop it with `kill <pid>` (a clean shutdown).
#
# Usage: deploy/local/start-kafka.sh DATA_DIR PORT CONTROLLER_PORT
#   DATA_DIR         created if missing; holds server.properties, cluster.id and
#                    the log segments (kraft-logs/). Reuse it to keep topics.
#   PORT             client (PLAINTEXT) port, e.g. 9092
#   CONTROLLER_PORT  KRaft controller port, e.g. 9093
# Environment:
#   KAFKA_HEAP_OPTS  JVM heap flags (default: -Xms256m -Xmx1g)
#   KAFKA_JVM_OPTS   extra JVM flags
#
# The classpath comes from build-kafka.sh, which is run first when it is
# missing from the cache.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 3 ]] || die "usage: $(basename "$0") DATA_DIR PORT CONTROLLER_PORT"
DATA_DIR="$1"
PORT="$2"
CONTROLLER_PORT="$3"
for p in "$PORT" "$CONTROLLER_PORT"; do
  [[ "$p" =~ ^[0-9]+$ && "$p" -ge 1 && "$p" -le 65535 ]] || die "'$p' is not a TCP port number"
done
[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "PORT and CONTROLLER_PORT must differ"

need java "Kafka needs a Java 17+ runtime"
VERSION="$(kafka_version)"
LIBS="$(kafka_libs_dir)"
if [[ ! -f "$LIBS/.built-from" ]]; then
  step "Kafka $VERSION classpath not in the cache yet; building it"
  "$LOCAL_DIR/build-kafka.sh" || die "build-kafka.sh failed"
fi
CP="$LIBS/*"

mkdir -p "$DATA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
LOG_DIR="$DATA_DIR/kraft-logs"
PROPS="$DATA_DIR/server.properties"

for p in "$PORT" "$CONTROLLER_PORT"; do
  if port_in_use "$p"; then die "something already listens on 127.0.0.1:$p"; fi
done

# The cluster id is made once per DATA_DIR and kept with it.
if [[ -s "$DATA_DIR/cluster.id" ]]; then
  CLUSTER_ID="$(cat "$DATA_DIR/cluster.id")"
  step "cluster id $CLUSTER_ID (kept in $DATA_DIR/cluster.id)"
elif [[ -f "$LOG_DIR/meta.properties" ]]; then
  CLUSTER_ID="$(sed -n 's/^cluster\.id=//p' "$LOG_DIR/meta.properties")"
  [[ -n "$CLUSTER_ID" ]] || die "no cluster.id in $LOG_DIR/meta.properties"
  printf '%s\n' "$CLUSTER_ID" >"$DATA_DIR/cluster.id"
  step "cluster id $CLUSTER_ID (read back from the formatted storage)"
else
  CLUSTER_ID="$(java -cp "$CP" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  [[ "$CLUSTER_ID" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "could not generate a cluster id (got '$CLUSTER_ID')"
  printf '%s\n' "$CLUSTER_ID" >"$DATA_DIR/cluster.id"
  step "generated cluster id $CLUSTER_ID (kept in $DATA_DIR/cluster.id)"
fi

# Rewritten on every start, so new ports take effect on the same data.
step "writing $PROPS (broker 127.0.0.1:$PORT, controller 127.0.0.1:$CONTROLLER_PORT)"
cat >"$PROPS" <<PROPERTIES
# Written by deploy/local/start-kafka.sh on every start; edits are lost.
# One KRaft node that is broker and controller, on the loopback interface only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$LOG_DIR

# A single node: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true

# Small local footprint.
num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=104857600
PROPERTIES

LOG4J=(-Dlog4j2.configurationFile="$LOCAL_DIR/kafka/log4j2.properties")

if [[ -f "$LOG_DIR/meta.properties" ]]; then
  step "storage in $LOG_DIR already formatted"
else
  step "formatting storage in $LOG_DIR"
  fmt_log="$DATA_DIR/format.log"
  if ! java "${LOG4J[@]}" -cp "$CP" kafka.tools.StorageTool format \
    --cluster-id "$CLUSTER_ID" --config "$PROPS" >"$fmt_log" 2>&1; then
    cat "$fmt_log" >&2
    die "formatting the storage failed"
  fi
fi

step "starting Kafka $VERSION on 127.0.0.1:$PORT (pid $$)"
# shellcheck disable=SC2086 # the *_OPTS variables hold several flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} \
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
  "${LOG4J[@]}" ${KAFKA_JVM_OPTS:-} \
  -cp "$CP" kafka.Kafka "$PROPS"
