# edge-infer: every environment this project needs is made here, from nothing.
#   make demo   runtime only (.venv, no torch), generates 5 maps
#   make test   development env (.venv-dev: runtime + train + dev) and every test
#   make model  retrain + export models/wafer-cae from ../shared/data/wafer.zip
#   make bench  onnxruntime vs PyTorch eager throughput, JSON out

PYTHON ?= python3
DATA ?= ../shared/data/wafer.zip
RUNTIME_VENV := .venv
DEV_VENV := .venv-dev
RUNTIME_SRC := pyproject.toml $(shell find edge_infer models/wafer-cae -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: demo test model bench clean

# The runtime env is a plain (non-editable) install, as a user gets it; it is
# rebuilt whenever the package or the default bundle changes.
$(RUNTIME_VENV)/.stamp: $(RUNTIME_SRC)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install --quiet .
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps .
	touch $@

$(DEV_VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEV_VENV)/bin/python -m pip install --quiet -e '.[train,dev]'
	touch $@

demo: $(RUNTIME_VENV)/.stamp
	cd /tmp && $(CURDIR)/$(RUNTIME_VENV)/bin/edge-infer generate --class None -n 5 --out $(CURDIR)/out/demo --force
	@echo "picture: $(CURDIR)/out/demo/generated.png"

test: $(RUNTIME_VENV)/.stamp $(DEV_VENV)/.stamp
	EDGE_INFER_RUNTIME_VENV=$(CURDIR)/$(RUNTIME_VENV) $(DEV_VENV)/bin/python -m pytest -q

model: $(DEV_VENV)/.stamp
	$(DEV_VENV)/bin/python -m training --data $(DATA) --out runs/wafer-cae --force
	$(DEV_VENV)/bin/python -m export runs/wafer-cae --data $(DATA) --out models/wafer-cae --force

bench: $(DEV_VENV)/.stamp
	$(DEV_VENV)/bin/python -m training.bench_all --out bench-results/bench.json

clean:
	rm -rf $(RUNTIME_VENV) $(DEV_VENV) out runs bench-results .pytest_cache
