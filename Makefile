# The README's two commands: `make book` and `make test`. Each creates .venv if missing and
# installs what it needs, so both work on a fresh machine that reaches only PyPI, Debian and npm.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline machines (and CI) read the small public data files from a mirror laid out like
# shared/data. Use the one beside the checkout when there is one, unless the caller set it.
MIRROR := $(abspath $(wildcard ../shared/data))
ifneq ($(MIRROR),)
export DAR_DATA_MIRROR ?= $(MIRROR)
endif

.PHONY: book test test-fast browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	touch $@

book: $(STAMP)
	$(BIN)/dar book

# Headless Chromium for the browser test comes from Debian; without root or apt the browser
# test skips with its reason.
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will skip"; \
	  else echo "note: chromium/chromedriver missing and not root; the browser test will skip"; fi; \
	fi

# Two pytest-xdist workers with one torch thread each (two torch processes on 2 cores, each with two
# threads, slow each other down); the smoke book's users share one worker (tests/conftest.py).
JOBS ?= 2
PYTEST = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup

# The full suite prints its ten slowest steps, so a CI log says where the minutes went.
test: $(STAMP) browser-deps
	$(PYTEST) --durations=10

# The fast tier for contributors: unit tests and doctests of every module, no kernel, book, browser or Ray.
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

clean:
	rm -rf _build
