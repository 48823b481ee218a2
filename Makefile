# Template tooling. Two commands set everything up on a fresh machine:
#   make generate   render the defaults into build/
#   make test       the whole template test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install generate test test-fast lint bench clean

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(STAMP)

generate: $(STAMP)
	rm -rf build
	$(BIN)/cookiecutter --no-input --output-dir build .
	@echo "Rendered the defaults into $(CURDIR)/build/my-service"

# The JUnit XML gives `make bench` the suite's wall time; nothing in the suite times itself.
test: $(STAMP)
	$(BIN)/pytest --junitxml=.cache/junit.xml

# Everything but the Docker builds and the slow load runs.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not docker and not slow"

lint: $(STAMP)
	$(BIN)/ruff check hooks tests bench cloudrun_fastapi_jinja.py
	$(BIN)/ruff format --check hooks tests bench cloudrun_fastapi_jinja.py

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf build .cache $(VENV)
