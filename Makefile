# Two commands: `make lab` opens the course, `make test` runs every test and notebook.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8888
# Jupyter refuses to run as root unless told; containers and CI machines often run as root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test unit notebooks site bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# JupyterLab on the course, on loopback only, with token authentication on (the URL with the token
# is printed when it starts).
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.ip=$(HOST) --ServerApp.port=$(PORT) --ServerApp.root_dir=notebooks $(ROOT_FLAG) \
		--IdentityProvider.token="$${JUPYTER_TOKEN:-$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(24))')}"

# The whole suite: unit tests and every notebook under nbval.
test: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider tests notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests

# Re-execute every notebook headless and save it with its outputs (what GitHub shows), then re-mark
# its lecture slides (RISE).
notebooks: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py notebooks/*.ipynb
	$(BIN)/python scripts/mark_slides.py

# The course as a static website in build/site/ (README + the committed notebooks with their outputs;
# nothing executes; any Sphinx warning, a broken cross-reference above all, fails the build).
site: $(STAMP)
	$(BIN)/python scripts/build_site.py

bench: $(STAMP)
	$(BIN)/python -m helpers.bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
