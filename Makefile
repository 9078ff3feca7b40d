# Set-up and entry points. `make demo` and `make test` work on a fresh clone: the first run
# creates .venv, installs the pinned CPU torch and mumis, and (as root, with apt) the
# Fashion-MNIST Debian package. A stamp file makes that happen once.

PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.mumis-setup.stamp
TORCH      := torch==2.13.0
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: venv data demo test lint clean-venv

venv: $(STAMP)

# Re-run when the dependencies change. The torch pin comes first: an unpinned torch
# requirement would pull a multi-GB CUDA build; 2.13.0 is the CPU wheel on this machine's disk.
$(STAMP): pyproject.toml Makefile
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -m venv $(VENV) || { \
	    echo "make: '$(PYTHON) -m venv' failed; trying to install python3-venv" >&2; \
	    if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv python3-pip; \
	    fi; \
	    rm -rf $(VENV); $(PYTHON) -m venv $(VENV); \
	  }; \
	fi
	$(PY) -m pip install --quiet '$(TORCH)'
	$(PY) -m pip install --quiet -e '.[dev,plot]'
	@$(MAKE) --no-print-directory data
	@touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist. Never fatal: digits needs no files
# and the Fashion-MNIST tests skip when the data is absent.
data:
	@if [ -d $(FMNIST_DIR) ]; then \
	  echo "Fashion-MNIST: $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "Fashion-MNIST: installing dataset-fashion-mnist with apt-get"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } \
	    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST runs need --data-dir" >&2; \
	else \
	  echo "warning: $(FMNIST_DIR) missing and apt-get unavailable (or not root); digits still works" >&2; \
	fi

demo: venv
	$(VENV)/bin/mumis demo

test: venv
	$(VENV)/bin/pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
