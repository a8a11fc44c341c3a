# The Makefile is the contract: `make demo`, `make test`, `make lint`, `make bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Debian packages the tests drive as foreign clients and real servers.
SYSTEM_PACKAGES := skopeo docker-registry

.PHONY: demo test test-containers lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# byte-compile our own sources once, as pip does for a regular install: with
	# PYTHONDONTWRITEBYTECODE set, an editable install would compile them at every start
	$(BIN)/python -m compileall -q src >/dev/null
	touch $(STAMP)

# Install what the tests need from Debian when it is missing and apt-get is usable.
system-deps:
	@missing=""; \
	command -v skopeo >/dev/null 2>&1 || missing="$$missing skopeo"; \
	test -x /usr/bin/docker-registry || missing="$$missing docker-registry"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

demo: $(STAMP)
	rm -rf demo/out && mkdir -p demo/out
	$(BIN)/python demo/samples.py demo/in
	$(BIN)/ocimerge create -o demo/out/multiarch.tar \
	    demo/in/app-amd64.tar demo/in/app-arm64.tar demo/in/app-armv7.tar
	$(BIN)/ocimerge inspect demo/out/multiarch.tar

test: $(STAMP) system-deps
	$(BIN)/pytest -q

# The registry integration tests again, against CNCF Distribution in a container (testcontainers;
# OCIMERGE_TEST_REGISTRY=container): on the Docker engine that answers (DOCKER_HOST or the default
# socket), else on a dockerd of its own, started and stopped as CI does (.ci/dockerd.sh; root and
# Debian's docker.io needed). The image is OCIMERGE_TEST_REGISTRY_IMAGE, else one built from
# /usr/bin/docker-registry (nothing is pulled), else registry:2. Plain `make test` uses no Docker.
CONTAINER_TESTS := tests/test_push.py tests/test_remote_sources.py tests/test_backends.py
test-containers: $(STAMP)
	.ci/dockerd.sh run $(BIN)/pytest -q $(CONTAINER_TESTS)

# ruff (with the complexity and argument-count rules), the formatter as a check, and
# mypy --strict over the library, its tests and its benchmarks.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench demo
	$(BIN)/ruff format --check src tests bench demo
	$(BIN)/mypy
	$(BIN)/mypy --strict tests bench demo

bench: $(STAMP)
	$(BIN)/python bench/merge_bench.py
	$(BIN)/python bench/push_bench.py
	$(BIN)/python bench/link_bench.py
	$(BIN)/python bench/bundle_bench.py

clean:
	rm -rf $(VENV) demo/out demo/in bench/work .mypy_cache .ruff_cache .pytest_cache .hypothesis
