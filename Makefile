# make train: set up .venv and run the default job (embedded synthetic data, ~1 minute on 2 cores)
# make test:  set up .venv and run the fast test tier (unit tests, configs, small synthetic runs)
# make test-slow: the slow tier (end-to-end studies, servers, the real data in ../shared/data)
# make test-all:  both tiers
# make ui:    the MLflow UI on ./mlflow.db (or $MLFLOW_TRACKING_URI) at http://127.0.0.1:5000
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install train test test-slow test-all lint ui clean

$(BIN)/medcls-train: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/medcls-train

train: install
	$(BIN)/medcls-train $(ARGS)

test: install
	$(BIN)/pytest $(ARGS)

test-slow: install
	$(BIN)/pytest -m "slow or realdata" $(ARGS)

test-all: install
	$(BIN)/pytest -m "" $(ARGS)

lint: install
	$(BIN)/pre-commit run -a

ui: install
	$(BIN)/medcls-ui $(ARGS)

clean:
	rm -rf outputs multirun/*/ .cache mlflow.db mlruns
