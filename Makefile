# edge-infer: every environment this project needs is made here, from nothing.
#   make demo   runtime only (.venv: edge-infer[cpu], no torch), generates 5 maps
#   make test   development env (.venv-dev: runtime + train + dev), onnxruntime-node (.node) and every test
#   make model  retrain + export models/wafer-cae from ../shared/data/wafer.zip
#   make bench  onnxruntime vs PyTorch eager throughput, JSON out
#   make evaluate  which augment recipes help a classifier (docs/evaluation.md; long, cached)

PYTHON ?= python3
DATA ?= ../shared/data/wafer.zip
RUNTIME_VENV := .venv
DEV_VENV := .venv-dev
# onnxruntime-node for the Node.js conformance test (tests/conformance/test_node_conformance.py):
# pinned, and --ignore-scripts, whose install script would download a CUDA provider.
NODE_DIR := .node
NODE_ORT_VERSION := 1.30.0
RUNTIME_SRC := pyproject.toml $(shell find edge_infer models/wafer-cae -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: demo test model bench evaluate clean

# The runtime env is a plain (non-editable) install, as a user gets it; it is
# rebuilt whenever the package or the default bundle changes.
$(RUNTIME_VENV)/.stamp: $(RUNTIME_SRC)
	$(PYTHON) -m venv --clear $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install --quiet '.[cpu]'
	touch $@

$(DEV_VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv --clear $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEV_VENV)/bin/python -m pip install --quiet -e '.[cpu,train,dev]'
	touch $@

demo: $(RUNTIME_VENV)/.stamp
	cd /tmp && $(CURDIR)/$(RUNTIME_VENV)/bin/edge-infer generate --class None -n 5 --out $(CURDIR)/out/demo --force
	@echo "picture: $(CURDIR)/out/demo/generated.png"

$(NODE_DIR)/.stamp:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(NODE_DIR) --ignore-scripts --no-audit --no-fund --no-save --loglevel=error \
			onnxruntime-node@$(NODE_ORT_VERSION) && touch $@; \
	else echo "node/npm not found: the Node.js conformance test will be skipped"; fi

test: $(RUNTIME_VENV)/.stamp $(DEV_VENV)/.stamp $(NODE_DIR)/.stamp
	EDGE_INFER_RUNTIME_VENV=$(CURDIR)/$(RUNTIME_VENV) $(DEV_VENV)/bin/python -m pytest -q

model: $(DEV_VENV)/.stamp
	$(DEV_VENV)/bin/python -m training --data $(DATA) --out runs/wafer-cae --force
	$(DEV_VENV)/bin/python -m export runs/wafer-cae --data $(DATA) --out models/wafer-cae --force

bench: $(DEV_VENV)/.stamp
	$(DEV_VENV)/bin/python -m bench.bench_all --out bench-results/bench.json

# Every arm's per-fold autoencoder and classifiers are cached ($$EDGE_INFER_EVAL_CACHE),
# so a rerun only trains what changed. SET and SEEDS choose the arms and seeds.
SET ?= all
SEEDS ?= 0
evaluate: $(DEV_VENV)/.stamp
	$(DEV_VENV)/bin/python -m training.evaluation usefulness --data $(DATA) --set $(SET) --seeds $(SEEDS) \
		--out docs/img/usefulness.json --force
	$(DEV_VENV)/bin/python -m training.evaluation fidelity --data $(DATA) --out docs/img/fidelity-two-readers.json --force

clean:
	rm -rf $(RUNTIME_VENV) $(DEV_VENV) $(NODE_DIR) out runs bench-results .pytest_cache
