# Two commands on a new machine: `make chat` (install, then chat) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test chat pull clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

pull: install
	$(BIN)/tokentrail pull

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

chat: install
	$(BIN)/tokentrail chat

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
