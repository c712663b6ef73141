# The two set-up commands of the README. Each makes its own virtualenv (.venv) on first use.
# torch is installed first and pinned: `torch==2.13.0` takes the machine's local CPU wheel
# where there is one; a bare `torch` requirement would pull gigabytes of CUDA wheels.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.hubkit-installed
OFFLINE := HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False

.PHONY: demo test docs install clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(VENV)/torch-constraint.txt
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[all,dev]"
	touch $@

demo: $(STAMP)
	$(OFFLINE) $(BIN)/hubkit demo --workdir hubkit-demo $(DEMO_ARGS)

# The browser tests drive Debian's chromium: installed on first use (needs root or sudo).
browser:
	.ci/ensure-chromium

# Built demo worlds are kept in the venv, keyed by what they depend on (`make clean` drops them).
# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file per worker at a time: much
# of it waits on subprocesses, servers and disks. TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(OFFLINE) HUBKIT_TEST_WORLD_CACHE=$(abspath $(VENV))/test-worlds $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

docs: $(STAMP)
	$(BIN)/python -m hubkit.docs --write

clean:
	rm -rf $(VENV) hubkit-demo .pytest_cache
