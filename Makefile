# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-demo

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Re-install only when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# One pytest worker per usable core (at most 4): the proxy-CLIP check runs on one while the others
# share the rest of the suite (tests/conftest.py). PYTEST_ARGS adds options, e.g. PYTEST_ARGS="-n 0".
test: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/tgdfer demo --config pipelines/synthetic.toml

clean-demo:
	rm -rf data/synth cache/synth*
