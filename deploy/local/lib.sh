# Shared helpers for the deploy/local scripts. Sourced, not run.
# shellcheck shell=bash

# Root of every cached build product of this project:
# ${XDG_CACHE_HOME:-$HOME/.cache}/todo-chatbot
TODO_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/todo-chatbot"

# Folder holding the deploy/local scripts (and the sources they build from).
LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

SCRIPT_NAME="$(basename "$0")"

# step MESSAGE: one progress line per step.
step() { printf '%s: %s\n' "$SCRIPT_NAME" "$*"; }

# die MESSAGE: print an error to stderr and stop with status 1.
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

# need COMMAND HINT: stop unless COMMAND is on PATH.
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"; }

# java_major: the feature release number of the `java` on PATH (17, 21, ...).
java_major() {
  java -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9][0-9]*\).*/\1/p' | head -n 1
}

# kafka_version: the Kafka release pinned in kafka/pom.xml (the single source).
kafka_version() {
  sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$LOCAL_DIR/kafka/pom.xml" | head -n 1
}

# kafka_libs_dir: where build-kafka.sh puts the pinned Kafka classpath.
kafka_libs_dir() { printf '%s/kafka/%s/libs' "$TODO_CACHE" "$(kafka_version)"; }

# port_in_use PORT: true when something already listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
