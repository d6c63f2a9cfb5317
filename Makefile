# tanya: `make console` to ask questions, `make test` to run the test suite (README: Quick start).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch (on this machine's disk); an unpinned torch pulls a CUDA build.
TORCH := torch==2.13.0

.PHONY: console ask add test reindex bot check lint install install-test train-reader clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[st,test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Incremental: does nothing when the index is up to date with corpus/.
reindex: install
	$(BIN)/tanya-reindex

console: reindex
	$(BIN)/tanya --console

# make ask Q="Siapa …?": one answer, then exit.
ask: reindex
	@test -n "$(Q)" || { echo 'usage: make ask Q="your question"' >&2; exit 2; }
	$(BIN)/tanya --ask "$(Q)"

# make add URL=https://…: fetch a news page into corpus/ and reindex.
add: install
	@test -n "$(URL)" || { echo 'usage: make add URL=https://…' >&2; exit 2; }
	$(BIN)/tanya-add "$(URL)"

bot: reindex
	$(BIN)/tanya

check: install
	$(BIN)/tanya --check

test: install-test
	$(BIN)/python -m pytest

# Rebuild retrieval/models/artefacts/reader.npz from ../shared/eval (hours on 2 cores; see README).
train-reader: install-test
	$(BIN)/pip install --quiet -e '.[train]'
	$(BIN)/python -m retrieval.tools.train_reader

lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf .index .index.builds .index.lock .cache
