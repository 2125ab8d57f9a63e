# Bootstraps .venv from nothing but python3 and make, without ever installing into the system interpreter (PEP 668:
# Debian's and Ubuntu's python3 refuse `pip install` outside a virtual environment). The standard library's venv
# makes .venv (or uv, when it is on the PATH); uv, from the PATH or else installed by .venv's own pip into
# .venv/.bootstrap, installs exactly what uv.lock pins. Where uv cannot be installed, .venv's pip installs the same
# pinned versions. `.ci/run bootstrap` rehearses this on a clean clone with Debian's /usr/bin/python3 and no uv.
PY         ?= python3
UV_VERSION ?= 0.13.9
# uv trusts the system's certificate store (the one a proxy's CA is added to), as pip does; 0 for uv's own roots
UV_SYSTEM_CERTS ?= 1
VENV       := .venv
BIN        := $(VENV)/bin
BOOT       := $(VENV)/.bootstrap
STAMP      := $(VENV)/.installed
UV         := $(shell command -v uv 2>/dev/null)
# uv.lock's registry packages as pip constraints (name==version), for the fallback without uv
LOCK_PINS  := import tomllib; lock = tomllib.load(open("uv.lock", "rb")); print("\n".join(p["name"] + "==" + p["version"] for p in lock["package"] if "registry" in p.get("source", {})))

MINUTES    ?= 30
SEED       ?= 1

.PHONY: venv test test-all lint bench bench-full drill simulate status soak clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found: install python3 (3.11 or later) or pass PY=/path/to/python3" >&2; exit 2; }
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: $(PY) is older than 3.11: pass PY=/path/to/python3.11-or-later" >&2; exit 2; }
ifneq ($(UV),)
	@$(UV) venv --quiet --allow-existing --python $(PY) $(VENV)
else
	@$(PY) -c 'import venv, ensurepip' 2>/dev/null || { echo "error: $(PY) cannot create a virtual environment (no ensurepip): install the python3-venv package (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; exit 2; }
	@$(PY) -m venv $(VENV)
endif

$(STAMP): pyproject.toml uv.lock | $(BIN)/python
	@uv="$(UV)"; \
	if [ -z "$$uv" ] && [ ! -x $(BOOT)/bin/uv ]; then \
	  $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null; \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check --target $(BOOT) uv==$(UV_VERSION) || \
	    echo "note: uv could not be installed into $(BOOT); installing the locked versions with .venv's pip" >&2; \
	fi; \
	[ -n "$$uv" ] || [ ! -x $(BOOT)/bin/uv ] || uv=$(BOOT)/bin/uv; \
	if [ -n "$$uv" ]; then \
	  VIRTUAL_ENV=$(CURDIR)/$(VENV) UV_SYSTEM_CERTS=$(UV_SYSTEM_CERTS) UV_NATIVE_TLS=$(UV_SYSTEM_CERTS) \
	    "$$uv" sync --quiet --active --frozen --extra test --compile-bytecode; \
	else \
	  $(BIN)/python -c '$(LOCK_PINS)' > $(VENV)/constraints.txt && \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(VENV)/constraints.txt -e '.[test]'; \
	fi
	@touch $(STAMP)

venv: $(STAMP)

# the fast suite (a few minutes); test-all adds the whole system as real processes (end to end, daemons, nemesis)
test: $(STAMP)
	$(BIN)/pytest -q -m "not e2e" -n auto --dist loadfile

# the e2e tests mostly wait on real processes (load about 1.5 on 2 cores with a worker per core): one worker more
# than cores keeps the machine busy; every test waits on conditions, never on wall-clock bounds
E2E_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
test-all: test
	$(BIN)/pytest -q -m e2e -n $(E2E_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict orchestrator providers

# the default set in a few minutes (fewer seeds and repetitions); bench-full every seed; both write bench.json and
# bench.png, and `$(BIN)/python -m benchmarks --readme` then rewrites README's table from bench.json
bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-full: $(STAMP)
	$(BIN)/python -m benchmarks --full

drill: $(STAMP)
	$(BIN)/failover drill

simulate: $(STAMP)
	$(BIN)/failover simulate configs/scenarios/hk-2022.yaml

# random fault schedules against the whole system until MINUTES are up; writes soak-report.json (see README)
soak: $(STAMP)
	$(BIN)/python tests/nemesis/soak.py --minutes $(MINUTES) --seed $(SEED)

status: $(STAMP)
	$(BIN)/failover status --config configs/example.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
