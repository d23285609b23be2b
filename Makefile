# Everything a fresh machine needs starts from `make setup`; `make demo` and
# `make test` call it, and it does nothing once the venv is up to date.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gdlab-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist

PEERS  := .venv-peers

.PHONY: setup data demo test verify bench bench-peers bench-startup bench-device clean

setup: $(STAMP) data

# torch first and pinned: 2.13.0 is the CPU build on this disk; any other
# request would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,ray,tensorboard,mlflow]"
	touch $(STAMP)

# From Debian, best effort: full Fashion-MNIST offline, and chromium for the
# test that opens report.html in a real headless browser. Without root or apt
# the studies that need the data say how to get it, and those tests are skipped.
data:
	@missing=""; \
	[ -d $(FASHION_MNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing from Debian:$$missing"; \
		(apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) \
			|| echo "warning: could not install$$missing; the studies and tests that need them are skipped"; \
	fi

demo: setup
	$(VENV)/bin/gdlab run

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

verify: setup
	$(VENV)/bin/gdlab verify

bench: setup
	$(PY) benchmarks/bench_epoch.py

# The JAX + optax peer lives in its own venv: gdlab itself does not depend on JAX.
$(PEERS)/.installed:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q jax optax
	touch $@

bench-peers: setup $(PEERS)/.installed
	$(PY) benchmarks/bench_peers.py --jax-python $(PEERS)/bin/python

bench-startup: setup
	$(PY) benchmarks/bench_startup.py

# On a machine with a GPU (CUDA torch); on a CPU it runs small, as a check.
bench-device: setup
	$(PY) benchmarks/bench_device.py

clean:
	rm -rf $(VENV) $(PEERS) runs .pytest_cache .hypothesis
