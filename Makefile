# The two commands of the README:
#   make run     set up .venv, run the whole pipeline on the default config, build the report
#   make test    set up .venv, run the test suite
# Other configs: make run CONFIG=config/seed-paper.yaml

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
CONFIG ?= config/config.yaml
CORES ?= all
PYTEST_ARGS ?=

# Snakemake's shell commands call `python`: make it the one of .venv.
export PATH := $(BIN):$(PATH)

.PHONY: run test lint docs report dag clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
	$(MAKE) --no-print-directory report CONFIG=$(CONFIG)

report: $(VENV)/.installed
	$(BIN)/snakemake --cores 1 --configfile $(CONFIG) \
	  --report results/$$($(BIN)/python -c "from hepflows.config import load; print(load('$(CONFIG)')['run'])")/report.html

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff and mypy (pinned in the dev extra; settings in pyproject.toml)
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site into site/, strictly: a broken link or anchor, a page missing from the
# nav or a docstring warning fails the build (mkdocs.yml).
$(VENV)/.docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	touch $@

docs: $(VENV)/.docs
	$(BIN)/mkdocs build --strict

# The pipeline page's rule graph (needs Graphviz's dot).
dag: $(VENV)/.installed
	$(BIN)/snakemake --configfile $(CONFIG) --rulegraph | dot -Tpng -Gdpi=80 > docs/img/rulegraph.png

clean:
	rm -rf results .snakemake site
