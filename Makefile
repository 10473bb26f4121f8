# The two commands of the README:
#   make sweep   set up, then run the VLAE paper's smoke sweep locally and print its table
#   make test    set up, then lint and run the test suite (what CI runs)
# Everything installs into a virtual environment (.venv) from pyproject.toml's pinned versions.

VENV    ?= .venv
PY      := $(VENV)/bin/python
STORAGE ?= sweep-results
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data chromium sweep test bench table clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

install: $(PY)
	$(PY) -m pip install -e ".[dev,dashboard]"

data:  # the full Fashion-MNIST, the local default dataset (Debian/Ubuntu)
	@[ -d /usr/share/datasets/fashion-mnist ] || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }

chromium:  # headless Chromium: tests/test_report.py renders the report page (Debian/Ubuntu)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

sweep: install data  # a second `make sweep` continues the first (--resume): nothing runs twice
	$(PY) sweeps/vlae.py --budget smoke --storage $(STORAGE) $$([ -d $(STORAGE)/cells ] && echo --resume)

table:
	$(PY) -m results table vlae --storage $(STORAGE)

test: install chromium
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: install data
	$(PY) benchmarks/trainer.py

clean:
	rm -rf $(STORAGE) .pytest_cache
