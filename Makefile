# `make demo`: set up .venv and run the whole pipeline on this machine's CPU.
# `make test`: set up .venv and run the test suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# torch first, pinned: the CPU wheel; executorch then finds it satisfied
	@$(PY) -m pip install -q torch==2.13.0
	@$(PY) -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m demo

clean:
	rm -rf $(VENV) .cache
