#!/usr/bin/env bash
# Runs one of Kafka's command-line tools from the cached classpath (see
# build-kafka.sh), with quiet logging.
#
# Usage: deploy/local/kafka-tool.sh TOOL [ARGS...]
#   TOOL  a short name (topics, consumer-groups, console-producer,
#         console-consumer, storage, metadata-quorum) or a fully qualified
#         main class.
# Example:
#   deploy/local/kafka-tool.sh topics --bootstrap-server 127.0.0.1:9092 \
#     --create --topic task-events --partitions 1 --replication-factor 1
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 ]] || die "usage: $(basename "$0") TOOL [ARGS...]"
tool="$1"
shift
case "$tool" in
  topics) class=org.apache.kafka.tools.TopicCommand ;;
  consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
  console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
  storage) class=kafka.tools.StorageTool ;;
  *.*) class="$tool" ;;
  *) die "unknown tool '$tool'" ;;
esac

need java "Kafka needs a Java 17+ runtime"
LIBS="$(kafka_libs_dir)"
[[ -f "$LIBS/.built-from" ]] || die "no Kafka classpath in $LIBS; run deploy/local/build-kafka.sh first"
exec java -Xmx256m -Dlog4j2.configurationFile="$LOCAL_DIR/kafka/tools-log4j2.properties" \
  -cp "$LIBS/*" "$class" "$@"
