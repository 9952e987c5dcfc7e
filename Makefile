# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test test-slow demo bench docs clean

setup: $(STAMP)

# Re-install whenever pyproject.toml changes (the stamp is older than it).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(VENV)/bin/pnp-imaging demo --out runs/demo

bench: $(STAMP)
	$(PY) -m bench.run_all

# HTML API reference from the docstrings (pdoc) into docs/api/ (git-ignored); the algorithms,
# their equations and sources are in docs/algorithms.md. Every public module is named: the
# packages' __all__ lists their API, not their submodules, so pdoc would skip those. The
# '!' pattern drops the submodules a package's __all__ already added, so each is named once.
DOC_PACKAGES := pnp_imaging operators denoisers_zoo
DOC_PKGS = $(shell find $(DOC_PACKAGES) -name __init__.py ! -path '*/__pycache__/*' | sed -e 's,/__init__\.py$$,,' -e 's,/,.,g' | sort)
DOC_MODS = $(shell find $(DOC_PACKAGES) -name '*.py' ! -name '_*' ! -path '*/__pycache__/*' | sed -e 's,\.py$$,,' -e 's,/,.,g' | sort)

docs: $(STAMP)
	rm -rf docs/api
	$(VENV)/bin/pdoc -d restructuredtext -o docs/api $(DOC_PKGS) '!($(shell echo $(DOC_MODS) | tr ' ' '|'))$$' $(DOC_MODS)
	@echo "API reference: docs/api/index.html"

clean:
	rm -rf runs .pytest_cache
