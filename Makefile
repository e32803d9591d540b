# pyvrrp: `make test` and `make demo` install what they need, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pyvrrp-installed
# Debian packages the netns tests, the lab and the benchmarks use.
DEB_PACKAGES := keepalived tshark tcpdump nftables iptables iproute2 iputils-ping procps curl openssl
PYTEST_ARGS ?=

.PHONY: all install system-deps lint typecheck test unit demo demo-migration bench-codec bench-failover bench-announce clean

all: test

# pip's output goes to a log, shown only when it fails.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pyvrrp and its test tools into $(VENV)"
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade "pip>=25.1" \
	   && $(PY) -m pip install --disable-pip-version-check -e . --group dev; \
	 } > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

# Installs only what is missing, so repeated runs stay fast.
system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	        echo "missing Debian packages:$$missing (run as root to install them)"; \
	    else \
	        echo "installing Debian packages:$$missing"; \
	        export DEBIAN_FRONTEND=noninteractive; \
	        apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    fi; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: install system-deps lint typecheck
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: install system-deps
	$(PY) netns-lab/demo.py

# The seed cluster moved from keepalived (VRRPv2) to pyvrrp one node at a time (~45 s).
demo-migration: install system-deps
	$(PY) netns-lab/demo_migration.py

bench-codec: install
	$(PY) bench/codec.py

bench-failover: install system-deps
	$(PY) bench/failover.py

bench-announce: install system-deps
	$(PY) bench/announce.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
