# Everything a fresh machine needs starts from `make setup`; `make demo` and
# `make test` call it, and it does nothing once the venv is up to date.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gdlab-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test verify bench clean

setup: $(STAMP) data

# torch first and pinned: 2.13.0 is the CPU build on this disk; any other
# request would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,ray]"
	touch $(STAMP)

# Full Fashion-MNIST offline, from Debian. Best effort: without root or apt
# the studies that need it say how to get it, and their tests are skipped.
data:
	@if [ ! -d $(FASHION_MNIST) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
			|| echo "warning: could not install dataset-fashion-mnist; fashion-mnist studies will be unavailable"; \
	fi

demo: setup
	$(VENV)/bin/gdlab run

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

verify: setup
	$(VENV)/bin/gdlab verify

bench: setup
	$(PY) benchmarks/bench_epoch.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
