# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install clean-demo readme-figure

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Re-install only when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The demo's proxy CLIP, trained once per machine (about 3 minutes on 2 cores) and again only when
# the code or the settings it is trained with change. `make test` reuses it (tests/conftest.py
# checks that its header records the test's settings); `make demo` reads the same file.
PROXY := cache/proxy/tgdfer-proxy-vit.safetensors
# make looks at times (the files of tgdfer/proxy.py's _CODE); `--if-stale` then compares what the
# file records (settings, code digest) and trains only when they differ.
PROXY_DEPS := $(addprefix tgdfer/,proxy.py synth.py faces.py augment.py prompts.py labels.py frames.py \
	model_configs/tgdfer-proxy-vit.json) pipelines/synthetic.toml
$(PROXY): $(PROXY_DEPS) | $(STAMP)
	$(BIN)/tgdfer proxy --config pipelines/synthetic.toml --if-stale
	touch $@

# One pytest worker per usable core (at most 4): the proxy-CLIP check runs on one while the others
# share the rest of the suite (tests/conftest.py). PYTEST_ARGS adds options, e.g. PYTEST_ARGS="-n 0".
# Bytecode is written (__pycache__, git-ignored) even where PYTHONDONTWRITEBYTECODE is set: without
# it every worker compiles tgdfer/ and rewrites the asserts of every test module again (24 s to
# collect the suite in each worker instead of 16 s).
PYTEST := PYTHONDONTWRITEBYTECODE= OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder
# Tests marked slow (minutes on 2 cores: compiling a training step with torch.compile) run in test-slow only.
test: $(STAMP) $(PROXY)
	TGDFER_TEST_PROXY=$(PROXY) TGDFER_TEST_CACHE=cache/test $(PYTEST) -m "not slow" $(PYTEST_ARGS)

# What `make test` leaves out (CI runs both): the slow tests, and the proxy-CLIP check with the proxy
# trained inside the test session instead of read from $(PROXY).
# The proxy check's module runs whole in its own session (its slow tests too), so the proxy is trained once.
test-slow: $(STAMP)
	TGDFER_TEST_PROXY= TGDFER_TEST_CACHE= $(PYTEST) -m slow --ignore tests/test_proxy.py $(PYTEST_ARGS)
	TGDFER_TEST_PROXY= TGDFER_TEST_CACHE= $(PYTEST) tests/test_proxy.py $(PYTEST_ARGS)

demo: $(STAMP) $(PROXY)
	$(BIN)/tgdfer demo --config pipelines/synthetic.toml

# The README's figure: the demo's own run (its proxy CLIP, its store, fold 1), copied from what
# `tgdfer evaluate` wrote there; the PNG records the run, store and encoder in its text chunks.
readme-figure: demo
	cp runs/synth/fold1/figures/strip_fold1_most_confident.png docs/figures/demo_strip_fold1.png

# What `make demo` makes (its dataset, store, run and sweep), for a demo made before the proxy CLIP or the
# settings changed: the demo then stops and names this target.
clean-demo:
	rm -rf data/synth cache/synth* runs/synth runs/sweeps/synthetic
