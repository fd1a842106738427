# Quick start: `make report` builds the demo account and last week's reports; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The demo account has a folder of its own, so data/ and reports/ hold only your synced account.
DEMO   := demo/data
# Jupyter refuses to start as root without --allow-root (a container's only user is often root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: report test test-deps demo lab bench clean

$(BIN)/kpi-report: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/kpi-report
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/kpi-report
	$(BIN)/kpi-report demo --data-dir $(DEMO)

report: demo
	$(BIN)/kpi-report run --week last --data-dir $(DEMO)
	@echo "open demo/reports/index.html"

test-deps: $(VENV)/.test-installed
	@{ command -v chromium && command -v faketime; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-dejavu-core faketime; \
	  else echo "the tests need Debian's chromium and faketime: sudo apt-get install chromium fonts-dejavu-core faketime"; fi; }

test: test-deps
	$(BIN)/python -m pytest

lab: demo
	$(BIN)/python -m pip install --quiet jupyterlab
	KPI_DATA_DIR=$(CURDIR)/$(DEMO) $(BIN)/jupyter lab $(ROOT_FLAG) notebooks/

bench: $(VENV)/.test-installed
	$(BIN)/python -m benchmarks

clean:  # the venv and the demo; data/ (your account, its token) and reports/ stay
	rm -rf $(VENV) demo
