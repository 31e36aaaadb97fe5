#!/usr/bin/env bash
# Makes the Secrets the Todo Chatbot's charts name, with fresh random values, for a development cluster whose
# PostgreSQL and Kafka run inside the release (values-minikube.yaml). Existing Secrets are kept.
# Usage: deploy/helm/dev-secrets.sh [namespace]   (default: the current one)
set -euo pipefail
ns=(); [[ $# -gt 0 ]] && ns=(-n "$1")
command -v kubectl >/dev/null || { echo "kubectl not found" >&2; exit 1; }

random() { head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "${1:-40}"; }
# make NAME KEY VALUE: a Secret unless it exists (a rerun keeps the keys data is encrypted or signed with).
make() {
  if kubectl "${ns[@]}" get secret "$1" >/dev/null 2>&1; then
    echo "secret $1 exists, kept"
  else
    kubectl "${ns[@]}" create secret generic "$1" --from-literal="$2=$3" >/dev/null
    echo "secret $1 created"
  fi
}

if kubectl "${ns[@]}" get secret todo-dev-postgres >/dev/null 2>&1; then
  pg_password="$(kubectl "${ns[@]}" get secret todo-dev-postgres -o jsonpath='{.data.password}' | base64 -d)"
else
  pg_password="$(random 32)"
fi
make todo-dev-postgres password "$pg_password"
make todo-jwt todo-jwt "$(random 48)"
make todo-dapr-api-token token "$(random 40)"
make todo-dapr-app-token token "$(random 40)"
for app in task-svc reminder-svc recurrence-svc notify-svc audit-svc chat-svc; do
  # {database} stays literal: each service puts its own database name there.
  make "$app-database-url" "$app-database-url" "postgresql://todo:$pg_password@todo-postgres:5432/{database}"
done
make todo-state-database-url todo-state-database-url "postgres://todo:$pg_password@todo-postgres:5432/todo_state"
