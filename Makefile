# `make demo`: set up .venv and run the whole pipeline on this machine's CPU.
# `make test`: set up .venv and run the test suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
# Debian packages the search and the tests use: the Fashion-MNIST dataset (search default);
# adb, bubblewrap and mksh for the emulated Android phone (tests/emulated_phone/).
# Installed where apt-get exists and we are root; elsewhere the commands that need one say which.
APT_PACKAGES := dataset-fashion-mnist adb bubblewrap mksh

.PHONY: demo test setup clean

$(STAMP): pyproject.toml Makefile
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install $$missing"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1)) || \
	    echo "warning: could not install $$missing; the tests that need them skip"; \
	  fi; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# torch first, pinned: the CPU wheel; executorch then finds it satisfied
	@$(PY) -m pip install -q torch==2.13.0
	@# ios: pymobiledevice3, so the iOS tests run against the real library's API
	@$(PY) -m pip install -q -e ".[dev,ios]"
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

# two workers, each test file on one (its module fixtures built once): many tests wait on
# subprocesses, phones and runners, so two cores finish the suite in little over half the time
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25

demo: setup
	$(PY) -m demo

clean:
	rm -rf $(VENV) .cache
