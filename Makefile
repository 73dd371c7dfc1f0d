# Two entry points: `make chat` (set up, download the default model, talk) and `make test`
# (format check, lint, types, tests). CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: on Linux with an NVIDIA GPU this is the CUDA build from
# PyPI; on the CI machines the CPU build of the same version comes from a local wheel.
TORCH ?= torch==2.13.0

.PHONY: chat test check install install-dev bench safety-eval memory-eval

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

chat: $(VENV)/.installed
	$(BIN)/python -m bot chat

# The web chat's browser test drives Debian's Chromium (no browser download). Installed here when
# missing and this is a root shell with apt-get (CI); elsewhere, install both packages yourself.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else \
		echo "note: install Debian's chromium and chromium-driver to run the browser test"; \
	fi

check: $(VENV)/.installed-dev | $(CHROMIUM)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/python -m pytest

test: check

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	touch $@

# The model benchmark on the full 400M-distill shape, with CTranslate2 int8 side by side.
bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/model_bench.py --ct2

# Precision, recall and F1 of the safety stages per category (the no-download stages; drop
# --no-classifier where Detoxify can be downloaded).
safety-eval: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/safety_eval.py --no-classifier

# Long-term memory: context recall at 5-500 turns, precision, added latency at 10,000 turns (SQLite,
# and PostgreSQL where BLENDERD_TEST_POSTGRES_URL names one).
memory-eval: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/memory_eval.py $(if $(BLENDERD_TEST_POSTGRES_URL),--postgres $(BLENDERD_TEST_POSTGRES_URL))
