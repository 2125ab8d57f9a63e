# Bootstraps .venv from nothing but python3 and make; uv does the install (pip fallback installs uv first).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
UV      := $(shell command -v uv 2>/dev/null)
STAMP   := $(VENV)/.installed

.PHONY: venv test lint bench drill simulate status clean

$(STAMP): pyproject.toml uv.lock
	@if [ -z "$(UV)" ]; then $(PY) -m pip install --quiet --user uv 2>/dev/null || $(PY) -m pip install --quiet uv; fi
	@UVBIN=$$(command -v uv || echo $$HOME/.local/bin/uv); \
	  $$UVBIN venv --quiet --allow-existing --python $(PY) $(VENV) && \
	  VIRTUAL_ENV=$(CURDIR)/$(VENV) $$UVBIN sync --quiet --active --frozen --extra test --compile-bytecode
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict orchestrator providers

bench: $(STAMP)
	$(BIN)/python -m benchmarks

drill: $(STAMP)
	$(BIN)/failover drill

simulate: $(STAMP)
	$(BIN)/failover simulate configs/scenarios/hk-2022.yaml

status: $(STAMP)
	$(BIN)/failover status --config configs/example.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
