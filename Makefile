# The two commands of the README:
#   make sweep      set up, then run the VLAE paper's smoke sweep locally and print its table
#   make test       set up, then lint and run the test suite (what CI runs)
# the one to run while developing (docs/testing.md):
#   make test-fast  set up, then lint and run the unit tests (tests/unit: no Ray, sweep or server)
# and CI's third:
#   make cluster    rehearse the README's cluster path on this machine (cluster/rehearsal/)
# Everything installs into a virtual environment (.venv) from pyproject.toml's pinned versions, once:
# `install` does nothing while .venv/.installed holds INSTALL_KEY (pyproject.toml's content and the
# pip command), so a second `make sweep` prints no pip output. pip's output goes to .venv/install.log
# and is shown (its tail) only when pip fails. `rm .venv/.installed` forces a reinstall.

VENV    ?= .venv
PY      := $(VENV)/bin/python
INSTALL := $(PY) -m pip install -e ".[dev,dashboard,cluster,trackers]"
INSTALL_KEY := $(shell { cat pyproject.toml; echo '$(INSTALL)'; } | sha256sum | cut -c1-16)
STAMP   := $(VENV)/.installed
LOG     := $(VENV)/install.log
STORAGE ?= sweep-results
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# $(call quietly,WHAT,COMMANDS): one line saying WHAT, the COMMANDS' output into $(LOG); when they
# fail, the log's last 40 lines, its path, and make stops with their exit status
quietly = echo "$(1) (output: $(LOG))"; { $(2); } >$(LOG) 2>&1 || { status=$$?; \
	tail -n 40 $(LOG) >&2; echo "make: $(1) failed (exit status $$status); all its output: $(LOG)" >&2; \
	exit $$status; }

.PHONY: install data chromium sweep test test-fast docs bench table clean cluster cluster-tools

$(PY):  # a failed start is removed, so the next make starts it again
	@mkdir -p $(VENV)
	@$(call quietly,creating $(VENV),python3 -m venv $(VENV) && \
		$(PY) -m pip install --upgrade pip setuptools wheel || { rm -f $(PY); false; })

install: $(PY)  # nothing to do (and nothing printed) while the install is current
	@[ "$$(cat $(STAMP) 2>/dev/null)" = "$(INSTALL_KEY)" ] || { rm -f $(STAMP); \
		$(call quietly,installing the project into $(VENV),$(INSTALL)) && echo $(INSTALL_KEY) >$(STAMP); }

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

test-fast: install  # tests/unit only (docs/testing.md); without Chromium one test skips
	$(PY) -m ruff check .
	$(PY) -m pytest tests/unit

docs: install  # the docs site into site/; --strict: a broken link or anchor fails
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

