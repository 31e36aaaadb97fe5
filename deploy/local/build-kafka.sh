#!/usr/bin/env bash
# Puts the pinned Apache Kafka release (broker + controller in KRaft mode, and
# its admin tools) on a plain classpath in the user's cache folder:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/todo-chatbot/kafka/<version>/libs/*.jar
# The version and the jar set come from deploy/local/kafka/pom.xml; Maven
# resolves them from Maven Central (its own downloads stay in ~/.m2). A second
# run finds the classpath stamped with the pom's checksum and does nothing.
#
# Usage: deploy/local/build-kafka.sh
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 0 ]] || die "takes no arguments"

POM="$LOCAL_DIR/kafka/pom.xml"
VERSION="$(kafka_version)"
[[ -n "$VERSION" ]] || die "no <kafka.version> in $POM"
LIBS="$(kafka_libs_dir)"
STAMP="$LIBS/.built-from"
want="$(sha256sum "$POM" | cut -d' ' -f1)"

need java "Kafka $VERSION needs a Java 17+ runtime"
major="$(java_major)"
[[ -n "$major" && "$major" -ge 17 ]] || die "Kafka $VERSION needs Java 17 or newer; 'java' is ${major:-unknown}"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  step "Kafka $VERSION classpath already in $LIBS (cached)"
else
  need mvn "install Maven to resolve Kafka from Maven Central"
  step "resolving Kafka $VERSION and its runtime dependencies with Maven"
  mkdir -p "$(dirname "$LIBS")"
  tmp="$(mktemp -d "${LIBS%/libs}/.partial.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  log="$tmp/maven.log"
  if ! mvn -B -q -f "$POM" -Dkafka.libs="$tmp/libs" package >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "Maven could not resolve Kafka $VERSION (full log above)"
  fi
  count="$(find "$tmp/libs" -name '*.jar' | wc -l)"
  [[ "$count" -gt 0 ]] || die "Maven copied no jars"
  printf '%s\n' "$want" >"$tmp/libs/.built-from"
  rm -rf "$LIBS"
  mv "$tmp/libs" "$LIBS"
  step "copied $count jars ($(du -sh "$LIBS" | cut -f1)) into $LIBS"
fi

step "checking the classpath starts Kafka's code"
got="$(java -cp "$LIBS/*" kafka.Kafka --version 2>/dev/null | head -n 1 || true)"
[[ "$got" == "$VERSION"* ]] || die "kafka.Kafka --version printed '${got}', expected $VERSION (delete $LIBS and rerun)"
step "Kafka $got ready"
