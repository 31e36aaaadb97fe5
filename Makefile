# The two set-up commands are `make up` and `make test`; everything they need
# is installed into .venv from pinned requirements (pip caches downloads in
# the user's cache folder, so repeat runs are quick).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := $(VENV)/bin/buf
INSTALLED := $(VENV)/.installed
PROTO_DEPS := build/proto-deps

PACKAGES := contracts-py service-kit task_svc reminder_svc recurrence_svc notify_svc audit_svc chat_svc
# Go tools are built once into the user's cache folder.
TOOLS_BIN := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/todo-chatbot/bin
GRPCURL_VERSION := v1.9.4
GRPCURL := $(TOOLS_BIN)/grpcurl
# helm is built from the Go module proxy (pinned; the binary's name carries its version, so a new pin builds anew);
# Dapr's CRDs come from the dapr/dapr Go module at the pinned Dapr release. Both are cached in the user's cache folder.
HELM_VERSION := v4.3.1
HELM := $(TOOLS_BIN)/helm-$(HELM_VERSION)
DAPR_VERSION := v1.18.3
DAPR_CRDS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/todo-chatbot/dapr/$(DAPR_VERSION:v%=%)/crds
SERVICE_CHARTS := $(addsuffix /chart,task_svc reminder_svc recurrence_svc notify_svc audit_svc chat_svc gateway)
# Code generators of the REST gateway (buf.gen.yaml), pinned; protoc-gen-go-grpc v1.6.2 writes code for
# google.golang.org/grpc >= 1.64 (the gateway uses v1.85.0).
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION := v2.33.0
GO_PLUGINS := $(addprefix $(TOOLS_BIN)/,protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2)
GATEWAY_BIN := build/todo-gateway
GATEWAY_SOURCES := $(shell find gateway -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name '*.json' 2>/dev/null)

.PHONY: up token grpcurl bench bench-reminders test check contracts proto-deps lint-proto check-contracts lint-python unit clean
.PHONY: gateway gateway-gen go-plugins check-gateway-gen test-gateway

# Every service in one process on an embedded PostgreSQL; data in ./.data. The REST gateway and the web page are
# served on http://127.0.0.1:8080 (TODO_GATEWAY_PORT).
up: $(INSTALLED) $(GATEWAY_BIN) web
	TODO_GATEWAY_BIN=$(GATEWAY_BIN) $(PY) -m todo_kit.embedded_host

# The distributed mode (deploy/local/stack.py): Kafka, one PostgreSQL server, every service in its own process (two
# replicas of reminder_svc and notify_svc), the gateway with REST and the web page on 127.0.0.1:8080 and every
# service over gRPC on 127.0.0.1:50051; data in ./.data-distributed (TODO_DISTRIBUTED_DIR). Ctrl-C stops it;
# `up-distributed-bg` returns once everything serves and `make down` stops it.
.PHONY: up-distributed up-distributed-bg down
up-distributed: $(INSTALLED) $(GATEWAY_BIN) web
	$(PY) deploy/local/stack.py up

up-distributed-bg: $(INSTALLED) $(GATEWAY_BIN) web
	$(PY) deploy/local/stack.py up --background

down: $(INSTALLED)
	$(PY) deploy/local/stack.py down

# A bearer token for USER, signed with the key `make up` uses: the same TODO_*
# environment (TODO_DATA_DIR, TODO_JWT_SECRET[_FILE]) reaches both. It never
# makes a key; before the first `make up` there is none, and it says so.
token: $(INSTALLED)
	@$(PY) -m todo_kit.tokens "$(USER)"

# grpcurl, to call the services from a shell (see README).
grpcurl: $(GRPCURL)

$(GRPCURL):
	GOBIN=$(TOOLS_BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

# The REST gateway (gateway/, Go): REST/JSON, live streams as server-sent events, the web page (docs/gateway.md).
gateway: $(GATEWAY_BIN)

$(GATEWAY_BIN): $(GATEWAY_SOURCES)
	cd gateway && go build -trimpath -o ../$(GATEWAY_BIN) ./cmd/todo-gateway

go-plugins: $(GO_PLUGINS)

$(TOOLS_BIN)/protoc-gen-go:
	GOBIN=$(TOOLS_BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS_BIN)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS_BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(TOOLS_BIN)/protoc-gen-grpc-gateway:
	GOBIN=$(TOOLS_BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)

$(TOOLS_BIN)/protoc-gen-openapiv2:
	GOBIN=$(TOOLS_BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)

# Go code and the OpenAPI document of the gateway from proto/ (buf.gen.yaml; committed under gateway/gen).
gateway-gen: proto-deps $(GO_PLUGINS)
	PATH=$(TOOLS_BIN):$$PATH $(BUF) generate

# Fails when gateway/gen is not what proto/ generates (regenerated into a scratch folder and compared).
check-gateway-gen: proto-deps $(GO_PLUGINS)
	BUF=$(BUF) TOOLS_BIN=$(TOOLS_BIN) scripts/check-gateway-gen.sh

# The gateway's Go tests, vet and formatting.
test-gateway:
	cd gateway && test -z "$$(gofmt -l cmd internal *.go)" || { gofmt -l cmd internal *.go; echo "gofmt -w the files above"; exit 1; }
	cd gateway && go vet ./... && go test ./...

# Measures the task service and appends the figures to docs/benchmarks.md.
bench: $(INSTALLED)
	$(PY) bench/bench_tasks.py --record

# Reminder lateness (10,000 due in one minute) and regeneration latency, appended to docs/benchmarks.md.
bench-reminders: $(INSTALLED)
	cd bench && ../$(PY) bench_reminders.py --record

# Notifications reaching open streams, idle streams' memory, ListActivity at a million entries; figures appended to
# docs/benchmarks.md.
.PHONY: bench-notify
bench-notify: $(INSTALLED)
	cd bench && ../$(PY) bench_notify.py --record

# Interpret and SendMessage latency through the chat; figures appended to docs/benchmarks.md.
.PHONY: bench-chat
bench-chat: $(INSTALLED)
	cd bench && ../$(PY) bench_chat.py --record

# REST ListTasks via the gateway vs gRPC (added latency), and 10,000 live SSE streams through one gateway
# (event-to-client latency, memory per stream); `--record` appends the figures to docs/benchmarks.md.
.PHONY: bench-gateway
bench-gateway: $(INSTALLED) $(GATEWAY_BIN)
	cd bench && TODO_GATEWAY_BIN=$(CURDIR)/$(GATEWAY_BIN) ../$(PY) bench_gateway.py --record

# The distributed mode (Kafka, a process per service) beside the embedded default, both started on scratch data and
# free ports: task commands/s with every consumer keeping up, TaskCreated -> ReminderScheduled, reminder lateness
# with 10,000 due in one minute, catch-up after the consumers were down 60 s (about 20 minutes); `--record` appends
# the figures to docs/benchmarks.md. BENCH_ARGS passes more options (e.g. BENCH_ARGS="--lead 240").
.PHONY: bench-distributed
bench-distributed: $(INSTALLED) $(GATEWAY_BIN)
	cd bench && TODO_GATEWAY_BIN=$(CURDIR)/$(GATEWAY_BIN) ../$(PY) bench_distributed.py --record $(BENCH_ARGS)

# Randomized fault rounds: mixed load, kill -9 at a random moment, restart, check nothing lost or doubled
# (several minutes for 100 rounds; figures in docs/reliability.md). A 3-round version runs in `make test`.
ROUNDS ?= 100
SEED ?= 1
.PHONY: faults faults-distributed
faults: $(INSTALLED)
	$(PY) tests/e2e/fault_rounds.py --rounds $(ROUNDS) --seed $(SEED)

# The same rounds on the distributed stack (its own, on free ports): each kills one or two service processes, the
# Kafka broker or the PostgreSQL server (about 15 s a round). A 3-round version runs in `make test`.
faults-distributed: $(INSTALLED) $(GATEWAY_BIN) kafka
	TODO_GATEWAY_BIN=$(GATEWAY_BIN) $(PY) tests/e2e/fault_rounds.py --mode distributed --rounds $(ROUNDS) --seed $(SEED)

test: check web-test unit

check: lint-proto check-contracts check-gateway-gen lint-python test-gateway lint-images

$(INSTALLED): requirements/dev.txt requirements/services.txt $(addsuffix /pyproject.toml,$(PACKAGES))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check $(addprefix -e ,$(subst service-kit,service-kit[embedded],$(PACKAGES)))
	touch $@

proto-deps: $(INSTALLED)
	$(PY) contracts-py/generate.py deps --deps-dir $(PROTO_DEPS)

# Regenerates contracts-py from proto/ (the generated code is committed).
contracts: proto-deps $(GO_PLUGINS)
	$(BUF) format -w proto
	$(BUF) lint
	$(PY) contracts-py/generate.py code
	PATH=$(TOOLS_BIN):$$PATH $(BUF) generate

lint-proto: proto-deps
	$(BUF) format --diff --exit-code proto
	$(BUF) lint
	BUF=$(BUF) scripts/check-breaking.sh

check-contracts: $(INSTALLED)
	$(PY) contracts-py/generate.py check

lint-python: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy contracts-py/src contracts-py/generate.py service-kit/src $(addsuffix /src,task_svc reminder_svc recurrence_svc notify_svc audit_svc chat_svc)

# --- Container images (deploy/images, docs/deploy.md) -------------------------------------------------------------
# `make images` builds one image per service and the gateway's with docker (buildx), podman or buildah, whichever
# exists (ENGINE= chooses): todo-chatbot/<name>:$(TAG) under REGISTRY= (e.g. REGISTRY=ghcr.io/example), TAG defaults
# to the VERSION file, PUSH=1 pushes; bases pinned by digest (deploy/images/bases.lock), SBOMs in build/images/sbom.
# Without an engine it says so and fails; tests/images proves the images' content by running their recipe instead.
DOCKERFILES := $(addsuffix /Dockerfile,task_svc reminder_svc recurrence_svc notify_svc audit_svc chat_svc gateway)
.PHONY: images lint-images
images:
	deploy/images/build-images.sh

# hadolint (pinned in requirements/dev.txt) over every Dockerfile.
lint-images: $(INSTALLED)
	$(VENV)/bin/hadolint $(DOCKERFILES)

# The pinned Apache Kafka classpath (KRaft broker and tools) in the user's cache folder; the Kafka runtime's tests
# start a broker from it. A second run only checks the cache.
.PHONY: kafka
kafka:
	deploy/local/build-kafka.sh

unit: $(INSTALLED) $(GRPCURL) $(GATEWAY_BIN) web browser kafka helm-deps $(DAPR_CRDS)/.fetched-from
	GRPCURL=$(GRPCURL) TODO_GATEWAY_BIN=$(GATEWAY_BIN) HELM=$(HELM) TODO_DAPR_CRDS=$(DAPR_CRDS) $(PY) -m pytest -q

clean:
	rm -rf $(VENV) build frontend/dist frontend/node_modules

# --- The web page (frontend/) and the browser it is tested in ---------------------------------------------------
# `make web` installs the pinned npm packages (npm's cache is in the user's cache folder; install scripts are not run:
# none is needed), type-checks and bundles into frontend/dist, again only when a source changed.
WEB_DIST := frontend/dist/index.html
WEB_MODULES := frontend/node_modules/.package-lock.json
WEB_SOURCES := $(shell find frontend/src frontend/static -type f 2>/dev/null) frontend/build.mjs frontend/tsconfig.json
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: web web-test browser screenshot
web: $(WEB_DIST)

$(WEB_MODULES): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

$(WEB_DIST): $(WEB_MODULES) $(WEB_SOURCES)
	cd frontend && node_modules/.bin/tsc --noEmit -p . && node build.mjs

# The page's logic (event-stream reading, merging task news, clarifying choices) under node's test runner.
web-test: $(WEB_MODULES)
	cd frontend && node_modules/.bin/tsc --noEmit -p tests && node test.mjs

# Debian's Chromium, which the browser tests drive through Playwright (it cannot download a browser of its own).
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# docs/images/web-chat.png, the README's picture of the page, made by the browser tests.
screenshot: $(INSTALLED) $(GATEWAY_BIN) web browser
	TODO_GATEWAY_BIN=$(GATEWAY_BIN) TODO_WEB_SCREENSHOT=docs/images/web-chat.png $(PY) -m pytest -q -p no:cacheprovider tests/browser -k chat_screenshot

# --- Helm charts (deploy/helm: the library chart, the umbrella release; <service>/chart; docs/deploy.md) -------------

.PHONY: helm helm-deps helm-check
helm: $(HELM)

$(HELM):
	GOBIN=$(TOOLS_BIN)/helm-build go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS_BIN)/helm-build/helm $@
	rmdir $(TOOLS_BIN)/helm-build

$(DAPR_CRDS)/.fetched-from:
	deploy/helm/fetch-dapr-crds.sh $(DAPR_VERSION) $(DAPR_CRDS)

# Each chart's charts/ (the library, then the subcharts into the umbrella), from the file:// dependencies, offline.
helm-deps: $(HELM)
	@for chart in $(SERVICE_CHARTS) deploy/helm/todo-chatbot; do \
	  $(HELM) dependency update --skip-refresh $$chart >/dev/null || exit 1; \
	done

# Lint, render with each values file, validate offline (Kubernetes 1.28 and the newest bundled schemas, Dapr's CRDs),
# policy tests (tests/helm). Part of `make test` through `unit`.
helm-check: $(INSTALLED) helm-deps $(DAPR_CRDS)/.fetched-from
	HELM=$(HELM) TODO_DAPR_CRDS=$(DAPR_CRDS) $(PY) -m pytest -q -p no:cacheprovider tests/helm
