# Set-up and the two commands the README gives: `make demo` and `make test`.
# GPU users: make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test
DEMO_ARGS ?=
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.cxr-fgbg-installed

.PHONY: demo test lint install clean-venv

demo: $(INSTALLED)
	$(BIN)/cxr-fgbg demo $(DEMO_ARGS)

test: $(INSTALLED)
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, from TORCH_SPEC, so that no dependency pulls a CUDA build by accident;
# the stamp records the spec, and a changed spec reinstalls.
$(VENV)/.torch-spec: $(BIN)/python FORCE
	@if [ "$$(cat $@ 2>/dev/null)" != "$(TORCH_SPEC)" ]; then \
		echo "installing $(TORCH_SPEC)"; \
		$(BIN)/python -m pip install --quiet $(TORCH_SPEC) && echo "$(TORCH_SPEC)" > $@; \
	fi

$(INSTALLED): pyproject.toml $(VENV)/.torch-spec
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

clean-venv:
	rm -rf $(VENV)

FORCE:
