# pyvrrp: `make test` and `make demo` install what they need, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pyvrrp-installed
# Debian packages the netns tests, the lab and the benchmarks use.
DEB_PACKAGES := keepalived tshark tcpdump nftables iptables iproute2 iputils-ping procps curl openssl faketime
PYTEST_ARGS ?=

.PHONY: all install system-deps lint typecheck test unit test-lowest deb demo demo-migration bench-codec bench-failover bench-announce bench-scale bench-soak bench-flood clean

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

# LOWEST=1 also runs the unit and runtime tests again with the lowest dependency versions
# (1.5 to 2 min, venv included). CI (.ci/run) runs them as a step of its own, so that
# `make test` alone stays well under 15 minutes as the suite grows.
LOWEST ?= 0
test: install system-deps lint typecheck
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered --durations=15 $(PYTEST_ARGS)
	@if [ "$(LOWEST)" != 0 ]; then $(MAKE) --no-print-directory test-lowest; fi

unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The unit and runtime tests against the lowest versions pyproject.toml allows
# (constraints-lowest.txt), in a second venv.
LOWEST_VENV ?= .venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.pyvrrp-installed
$(LOWEST_STAMP): pyproject.toml constraints-lowest.txt
	@test -x $(LOWEST_VENV)/bin/python || $(PYTHON) -m venv $(LOWEST_VENV)
	@echo "installing pyvrrp with its lowest dependency versions into $(LOWEST_VENV)"
	@{ $(LOWEST_VENV)/bin/python -m pip install --disable-pip-version-check --upgrade "pip>=25.1" \
	   && $(LOWEST_VENV)/bin/python -m pip install --disable-pip-version-check \
	        -c constraints-lowest.txt -e . --group test; \
	 } > $(LOWEST_VENV)/install.log 2>&1 || { cat $(LOWEST_VENV)/install.log; exit 1; }
	@touch $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pip freeze --exclude-editable | grep -iE '^(trio|pyroute2|attrs|outcome|h11)=='
	$(LOWEST_VENV)/bin/python -m pytest -p no:cacheprovider tests/unit tests/runtime $(PYTEST_ARGS)

# The Debian package and the single-file zipapp, in dist/ (see docs/packaging.md).
deb: install
	$(PY) deb/build_deb.py --out dist

demo: install system-deps
	$(PY) netns-lab/demo.py

# The seed cluster moved from keepalived (VRRPv2) to pyvrrp one node at a time (~1 min).
demo-migration: install system-deps
	$(PY) netns-lab/demo_migration.py

bench-codec: install
	$(PY) bench/codec.py

bench-failover: install system-deps
	$(PY) bench/failover.py

bench-announce: install system-deps
	$(PY) bench/announce.py

# The full matrix (about 14 minutes); bench/scale.py --help for a subset.
bench-scale: install system-deps
	$(PY) bench/scale.py

# 30 minutes of random faults (SOAK_ARGS="--duration 600 --seed 3" for another run).
SOAK_ARGS ?=
bench-soak: install system-deps
	$(PY) bench/soak.py $(SOAK_ARGS)

FLOOD_ARGS ?=
bench-flood: install system-deps
	$(PY) bench/flood.py $(FLOOD_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage \
	    dist build *.egg-info
