# The two commands of the README:
#   make sweep      set up, then run the VLAE paper's smoke sweep locally and print its table
#   make test       set up, then lint and run the test suite (what CI runs)
# the one to run while developing (docs/testing.md):
#   make test-fast  set up, then lint and run the unit tests (tests/unit: no Ray, sweep or server)
# and CI's third:
#   make cluster    rehearse the README's cluster path on this machine (cluster/rehearsal/)
# Everything installs into a virtual environment (.venv) from pyproject.toml's pinned versions.

VENV    ?= .venv
PY      := $(VENV)/bin/python
INSTALL := $(PY) -m pip install -e ".[dev,dashboard,cluster,trackers]"
STORAGE ?= sweep-results
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data chromium sweep test test-fast docs bench table clean cluster cluster-tools

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

install: $(PY)
	$(INSTALL)
	@touch $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | $(PY)  # install once, and again after pyproject.toml changes
	$(INSTALL)
	@touch $@

data:  # the full Fashion-MNIST, the local default dataset (Debian/Ubuntu)
	@[ -d /usr/share/datasets/fashion-mnist ] || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }

chromium:  # headless Chromium: tests/unit/test_report.py renders the report page (Debian/Ubuntu)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

sweep: install data  # a second `make sweep` continues the first (--resume): nothing runs twice
	$(PY) sweeps/vlae.py --budget smoke --storage $(STORAGE) $$([ -d $(STORAGE)/cells ] && echo --resume)

table:
	$(PY) -m results table vlae --storage $(STORAGE)

test: install chromium cluster-tools  # PostgreSQL: tests/e2e/test_study_storage_journeys.py
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: $(VENV)/.installed  # tests/unit only (docs/testing.md); without Chromium one test skips
	$(PY) -m ruff check .
	$(PY) -m pytest tests/unit

docs: $(VENV)/.installed  # the docs site into site/; --strict: a broken link or anchor fails
	$(PY) -m mkdocs build --strict

bench: install data
	$(PY) benchmarks/trainer.py

clean:
	rm -rf $(STORAGE) .pytest_cache

cluster-tools:  # sshd, rsync and PostgreSQL 15 for the rehearsal (Debian/Ubuntu; no service started)
	@[ -x /usr/sbin/sshd ] && command -v rsync ss >/dev/null && [ -x /usr/lib/postgresql/15/bin/initdb ] || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y openssh-server rsync iproute2 postgresql-15; }

# `ray up` + `ray submit` of a sweep onto S3 on a 3-node cluster of this machine's loopback
# addresses, a worker killed mid-sweep, the study in PostgreSQL, then `results` as on a laptop.
# Needs root (a node user, sshd, PostgreSQL); every process it starts it stops, also on Ctrl-C.
cluster: install cluster-tools
	$(SUDO) $(PY) cluster/rehearsal/rehearse.py

