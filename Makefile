# Two commands: `make lab` opens the course (your own copies of the lessons, in workspace/), `make test`
# runs every test and notebook.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888
# The learner's own copies of the lessons (git-ignored). `:=`, not `?=`: a WORKSPACE variable in the
# environment (Jenkins sets one) must not move it; `make lab WORKSPACE=dir` does.
WORKSPACE := workspace

.PHONY: lab workspace test unit test-sweep-torch test-gpu-plan gpu-check notebooks site bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# JupyterLab on workspace/ (made with the lessons if missing), on loopback only, with token authentication
# on. scripts/lab.py passes the token in the environment (JUPYTER_TOKEN if set, else a random one), never
# on a command line, and prints the full login URL once the server answers; Ctrl-C stops it.
lab: $(STAMP)
	$(BIN)/python scripts/lab.py --port $(PORT) --root $(WORKSPACE)

# Copy into workspace/ the lessons it lacks (lessons that arrived after it was made); never overwrites.
workspace:
	$(PYTHON) scripts/workspace.py $(WORKSPACE)

# The whole suite: unit tests and every notebook under nbval (the 25 slowest are listed at the end, so
# a CI log says where the suite's time goes).
test: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider --durations=25 tests notebooks

# The whole suite again on the torch build the committed sweeps were made with (scripts/sweep_build.py
# reads it from results/sweeps/), in a venv of its own: there, on the sweep's kind of CPU, a live run
# must reproduce its sweep bit for bit; elsewhere it is checked against the seeds' spread (helpers.reproduce).
# Nothing to do when `make test`'s torch already is that build.
SWEEP_VENV := .venv-sweep-torch
test-sweep-torch: $(STAMP)
	@if [ "$$($(BIN)/python -c 'import torch; print(torch.__version__)')" = "$$($(PYTHON) scripts/sweep_build.py --full)" ]; then \
		echo "make test already ran on the sweeps' torch ($$($(PYTHON) scripts/sweep_build.py --full))"; \
	else \
		$(PYTHON) -m venv $(SWEEP_VENV) && \
		$(SWEEP_VENV)/bin/python -m pip install --quiet --upgrade pip && \
		$(SWEEP_VENV)/bin/python -m pip install --quiet "torch==$$($(PYTHON) scripts/sweep_build.py)" && \
		$(MAKE) test VENV=$(SWEEP_VENV); \
	fi

# The branch a GPU kernel takes, run here on whatever device there is: every lesson on its GPU plan
# (COURSE_PLAN=gpu; bf16 autocast works on the CPU) with every training run at STEPS_SCALE of its
# length (COURSE_STEPS_SCALE, helpers.plan). Executes each notebook and fails on any error; saves nothing.
STEPS_SCALE ?= 0.02
test-gpu-plan: $(STAMP)
	COURSE_PLAN=gpu COURSE_STEPS_SCALE=$(STEPS_SCALE) $(BIN)/python scripts/run_notebooks.py --no-save notebooks/*.ipynb

# On a machine with CUDA: every lesson on its real GPU plan, timed, plus the capstone's training and
# decode speed; writes the README's GPU column (scripts/gpu_check.py --help).
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py --write-readme

# The edit-test loop: fast tests only (no browser, nothing marked slow, no notebooks), under two minutes.
unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow and not browser" tests

# Re-execute every notebook headless and save it with its outputs (what GitHub shows), then re-mark
# its lecture slides (RISE). It refuses to start if a notebook has changes that are in no commit (a
# learner's answers?) unless FORCE=1 (`make notebooks FORCE=1`; make passes it on in the environment).
# A notebook that fails is reported at the end and not saved, and then the slides are not re-marked.
# mark_slides gets --force because run_notebooks has checked the same notebooks and just rewrote them.
notebooks: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py notebooks/*.ipynb
	$(BIN)/python scripts/mark_slides.py --force

# The course as a static website in build/site/ (README + the committed notebooks with their outputs;
# nothing executes; any Sphinx warning, a broken cross-reference above all, fails the build).
site: $(STAMP)
	$(BIN)/python scripts/build_site.py

bench: $(STAMP)
	$(BIN)/python -m helpers.bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(SWEEP_VENV) .pytest_cache
